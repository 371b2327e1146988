"""Runs inside the ms-swift environment: entry, parser check, dataset rendering."""

"""Scripts the tests run inside a framework's own environment (ms-swift's interpreter, not the launcher's)."""

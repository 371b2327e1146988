"""Runs inside the LLaMA-Factory environment: entry, parser check, dataset rendering, the `glm45` template."""

"""Files vLLM loads by path (`--tool-parser-plugin`), run inside the vLLM server process."""

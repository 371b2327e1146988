"""GLM-4.5's conversation format, the format-parity check, and sample rewards for its outputs."""

"""Recipe files: their schema, resolution and overrides, the model descriptions, the component names."""

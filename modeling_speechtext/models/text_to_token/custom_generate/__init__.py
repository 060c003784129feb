"""The `custom_generate/` folder of a saved text-to-token model (transformers' Hub custom generation)."""

__all__: list[str] = []

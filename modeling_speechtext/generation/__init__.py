"""Inference on top of the models: speech encoding, text-to-token synthesis, continuous batching."""

__all__: list[str] = []

"""Speech-text model: the streaming-thoughts layout of an assistant turn and the logits processor enforcing it."""

__all__: list[str] = []

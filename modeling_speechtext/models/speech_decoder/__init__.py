"""Speech decoder: speech tokens -> mel (conditional flow matching) -> waveform, streamable."""

__all__: list[str] = []

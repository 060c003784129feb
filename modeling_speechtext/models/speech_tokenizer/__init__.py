"""Speech tokenizer: Whisper-style encoder + one VQ codebook at 12.5 Hz, trained with an ASR loss."""

__all__: list[str] = []

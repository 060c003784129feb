"""Numbers that every stage must agree on, defined once (as Moshi does)."""

SAMPLE_RATE = 16_000
"""Model-side audio rate: the tokenizer's feature extractor and every corpus use 16 kHz."""

HOP_LENGTH = 160
"""Whisper's mel hop: 100 mel frames per second; the conv stem halves it to 50 Hz."""

N_MELS = 80

ENCODER_FRAME_RATE = 50.0
"""Frames per second after the Whisper conv stem (stride 2 over 100 Hz mel)."""

DEFAULT_POOLING_KERNEL = 4
"""Average-pooling kernel: 50 Hz / 4 = 12.5 Hz, one speech token per 80 ms (1,280 samples)."""

BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
AUDIO_TOKEN_TEMPLATE = "<|audio_{}|>"

__all__ = [
    "SAMPLE_RATE",
    "HOP_LENGTH",
    "N_MELS",
    "ENCODER_FRAME_RATE",
    "DEFAULT_POOLING_KERNEL",
    "BEGIN_OF_AUDIO",
    "END_OF_AUDIO",
    "AUDIO_TOKEN_TEMPLATE",
]

"""Corpus builders: offline TTS speech, text, supervised pairs, interleaved, dialogue."""

__all__: list[str] = []

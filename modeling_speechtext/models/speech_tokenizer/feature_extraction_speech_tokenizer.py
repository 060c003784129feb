"""The speech tokenizer's feature extractor: transformers' `WhisperFeatureExtractor`, configured, not copied.

The only change is the defaults: no padding to 30 s and no truncation, because the tokenizer takes each clip at
its own length (Whisper's 30 s padding would cost ~3x the compute on short clips and change nothing useful).
Registered for `AutoFeatureExtractor` so a saved tokenizer folder loads with `trust_remote_code=True` alone.
"""

from __future__ import annotations

from transformers import WhisperFeatureExtractor

from .configuration_speech_tokenizer import fix_auto_map


class SpeechTokenizerFeatureExtractor(WhisperFeatureExtractor):
    r"""Log-mel features (Whisper's exact computation) at each input's own length.

    Args: as `WhisperFeatureExtractor` (`feature_size` mel bins, `sampling_rate`, `hop_length`, ...).
    Calling it defaults to `padding="longest"` and `truncation=False`. Pass `sampling_rate=` as with any
    transformers extractor: it is deliberately *not* filled in, so that audio at another rate is refused by
    `WhisperFeatureExtractor`'s own check instead of being read at the wrong speed.
    """

    def __call__(self, raw_speech, truncation: bool = False, padding: str | None = "longest", **kwargs):
        return super().__call__(raw_speech, truncation=truncation, padding=padding, **kwargs)

    def to_dict(self) -> dict:
        output = super().to_dict()
        if output.get("auto_map"):
            output["auto_map"] = fix_auto_map(output["auto_map"])
        return output


SpeechTokenizerFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["SpeechTokenizerFeatureExtractor"]

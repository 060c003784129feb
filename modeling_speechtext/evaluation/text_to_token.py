"""TTS WER of a text-to-token model: the speech tokenizer's ASR head is the judge (no audio is made)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modeling_speechtext.evaluation.wer import word_error_rate
from modeling_speechtext.text_normalization import normalize_text


def tts_wer(
    transcribe: Callable[[list[list[int]]], list[str]],
    texts: Sequence[str],
    synthesized: Sequence[Sequence[int]],
    real: Sequence[Sequence[int]] | None = None,
    normalize: Callable[[str], str] = normalize_text,
) -> dict[str, float]:
    """The ASR head on synthesized tokens vs the input text, next to its WER on real tokens of the same sentences
    (the ceiling a text-to-token model can reach through this judge). Texts empty after normalisation are not
    synthesized-and-scored at all."""
    keep = [i for i, t in enumerate(texts) if normalize(t)]
    if not keep:
        raise ValueError("tts_wer: every reference text is empty after normalisation")
    refs = [texts[i] for i in keep]
    out = {
        "tts_wer": word_error_rate(refs, transcribe([list(synthesized[i]) for i in keep]), normalize),
        "n_sentences": len(keep),
    }
    if real is not None:
        out["real_token_wer"] = word_error_rate(refs, transcribe([list(real[i]) for i in keep]), normalize)
        out["tts_over_real"] = out["tts_wer"] / out["real_token_wer"] if out["real_token_wer"] > 0 else float("inf")
    return out


__all__ = ["tts_wer"]

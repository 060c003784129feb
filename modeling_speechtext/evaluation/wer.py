"""The one WER of the project: every stage's transcripts are scored here, on one normalisation and one policy.

Policy (the same for the tokenizer's ASR, the decoder's resynthesis and the text-to-token TTS judge):
references and hypotheses both go through `normalize_text` (the ASR target form); a pair whose reference is
empty after normalisation is not scored (there is nothing to get wrong); an empty hypothesis counts as all
deletions; when no pair is left the call fails, because a WER of nothing is not 0 and not 1. jiwer does the
alignment (corpus-level: total edits / total reference words).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modeling_speechtext.text_normalization import normalize_text


def scored_pairs(
    references: Sequence[str], hypotheses: Sequence[str], normalize: Callable[[str], str] = normalize_text
) -> tuple[list[str], list[str]]:
    """The normalised (reference, hypothesis) lists that are scored, empty references left out."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty reference transcript to score")
    return [r for r, _ in pairs], [h for _, h in pairs]


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], normalize: Callable[[str], str] = normalize_text
) -> dict[str, float]:
    """Corpus WER and CER, and how many pairs were scored."""
    import jiwer

    refs, hyps = scored_pairs(references, hypotheses, normalize)
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps)), "n_scored": len(refs)}


def word_error_rate(
    references: Sequence[str], hypotheses: Sequence[str], normalize: Callable[[str], str] = normalize_text
) -> float:
    """Corpus WER (see the module docstring for the policy)."""
    import jiwer

    return float(jiwer.wer(*scored_pairs(references, hypotheses, normalize)))


__all__ = ["error_rates", "scored_pairs", "word_error_rate"]

"""Span planning: which words of a document become speech, and how a planned document becomes token ids.

Pure functions (units, span sampling, speakability, document plans, assembly): no model, no I/O, so every rule of
the paper's recipe (PAPER.md §4) is unit-tested on its own. Randomness comes in only through the `rng` argument.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modeling_speechtext.sentences import sentence_spans

TEXT, SPEECH = "text", "speech"
GRANULARITIES = ("word", "sentence")
DISTRIBUTIONS = ("poisson", "geometric", "uniform", "fixed")

_WORD_RE = re.compile(r"\S+")
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def split_units(text: str, granularity: str = "word") -> list[tuple[int, int]]:
    """Character ranges `(start, end)` of the words or sentences of `text`, in order, never overlapping."""
    if granularity == "word":
        return [m.span() for m in _WORD_RE.finditer(text)]
    if granularity == "sentence":
        # a bAbI answer after its question ("Where is Mary? bathroom.") is a sentence of its own here
        return sentence_spans(text, strict=False)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


@dataclass(frozen=True)
class SpanLengthDistribution:
    """How many units (words or sentences) one speech span has: `distribution` clipped to [`min`, `max`].

    `poisson`/`geometric` take `mean`; `uniform` draws from [`min`, `max`]; `fixed` always gives `round(mean)`.
    """

    distribution: str = "poisson"
    mean: float = 10.0
    min: int = 1
    max: int = 40

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"span_length.distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if not 1 <= self.min <= self.max or self.mean <= 0:
            raise ValueError(f"span_length needs 1 <= min <= max and mean > 0, got {self}")

    def sample(self, rng) -> int:
        if self.distribution == "poisson":
            n = int(rng.poisson(self.mean))
        elif self.distribution == "geometric":
            n = int(rng.geometric(1.0 / max(self.mean, 1.0)))
        elif self.distribution == "uniform":
            n = int(rng.integers(self.min, self.max + 1))
        else:
            n = round(self.mean)
        return min(max(n, self.min), self.max)


def sample_spans(n_units: int, eta: float, rng, lengths: SpanLengthDistribution) -> list[tuple[int, int]]:
    """Non-overlapping, non-adjacent unit ranges `[a, b)` covering about `eta * n_units` units.

    The count is stochastically rounded (`floor(eta * n + U)`), so short documents still average `eta`. Span lengths
    are drawn from `lengths` until they reach the count (the last one trimmed); the text units left are spread over
    the gaps uniformly at random, with at least one text unit between two spans (adjacent spans would be one span).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if n_units <= 0 or eta == 0.0:
        return []
    n_speech = min(n_units, int(math.floor(eta * n_units + rng.random())))
    if n_speech == 0:
        return []
    sizes: list[int] = []
    while sum(sizes) < n_speech:
        sizes.append(min(lengths.sample(rng), n_speech - sum(sizes)))
    n_text = n_units - n_speech
    while len(sizes) - 1 > n_text:  # not enough text to separate them: merge neighbours
        j = int(rng.integers(len(sizes) - 1))
        sizes[j : j + 2] = [sizes[j] + sizes[j + 1]]
    k = len(sizes)
    gaps = [int(g) for g in rng.multinomial(n_text - (k - 1), [1.0 / (k + 1)] * (k + 1))]
    for i in range(1, k):
        gaps[i] += 1
    spans, pos = [], 0
    for i, size in enumerate(sizes):
        pos += gaps[i]
        spans.append((pos, pos + size))
        pos += size
    return spans


def speakable_text(text: str) -> str | None:
    """What a text-to-token model is given for a span: accents folded to ASCII, typographic quotes/dashes made
    plain, whitespace collapsed. None when the span cannot be spoken: no ASCII letter, or letters of a script that
    does not fold to ASCII (the model never heard them)."""
    out = []
    for ch in unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY)):
        if ord(ch) < 128:
            out.append(ch)
        elif unicodedata.category(ch) == "Mn":  # combining accent of a folded letter
            continue
        elif unicodedata.category(ch).startswith("L"):
            return None
        else:
            out.append(" ")
    folded = " ".join("".join(out).split())
    return folded if re.search(r"[A-Za-z]", folded) else None


@dataclass(frozen=True)
class Segment:
    """A piece of a document. `text` is the raw slice (leading whitespace included, so the raw texts of a
    document's segments concatenate back to it); `speech_text` is what the text-to-token model reads."""

    modality: str
    text: str
    speech_text: str | None = None

    @property
    def n_words(self) -> int:
        return len(self.text.split())


@dataclass
class DocumentPlan:
    segments: list[Segment]
    skip_reason: str | None = None  # "empty" | "no_speakable_text"
    truncated: bool = False
    counts: Counter = field(default_factory=Counter)


def plan_document(
    text: str | None,
    rng,
    *,
    eta: float = 0.3,
    granularity: str = "word",
    lengths: SpanLengthDistribution | None = None,
    max_document_chars: int = 20_000,
    max_span_chars: int = 300,
) -> DocumentPlan:
    """Decide which parts of a document become speech. Pure given `rng`.

    Bad input is counted, never fatal: an empty document or one without a single speakable word is skipped
    (`skip_reason`); a huge document is cut at a unit boundary (`truncated`); a span with unspeakable characters
    or longer than `max_span_chars` stays text (`counts["spans_unspeakable"]`, `counts["spans_too_long"]`).
    """
    lengths = lengths or SpanLengthDistribution()
    text = (text or "").strip()
    if not text:
        return DocumentPlan([], skip_reason="empty")
    truncated = False
    if len(text) > max_document_chars:
        cut = text.rfind(" ", 0, max_document_chars + 1)
        text, truncated = text[: cut if cut > 0 else max_document_chars].rstrip(), True
    if not any(speakable_text(text[a:b]) for a, b in split_units(text, "word")):
        return DocumentPlan([], skip_reason="no_speakable_text", truncated=truncated)
    units = split_units(text, granularity)
    counts: Counter = Counter()
    segments: list[Segment] = []
    prev_end = 0  # boundaries sit at the end of the previous unit: whitespace goes with the following segment
    for a, b in sample_spans(len(units), eta, rng, lengths):
        span_start, span_end = (units[a - 1][1] if a > 0 else 0), units[b - 1][1]
        raw = text[span_start:span_end]
        counts["spans_sampled"] += 1
        spoken = speakable_text(raw)
        if spoken is None:
            counts["spans_unspeakable"] += 1
            continue
        if len(spoken) > max_span_chars:
            counts["spans_too_long"] += 1
            continue
        if span_start > prev_end:
            segments.append(Segment(TEXT, text[prev_end:span_start]))
        segments.append(Segment(SPEECH, raw, spoken))
        prev_end = span_end
    if prev_end < len(text):
        segments.append(Segment(TEXT, text[prev_end:]))
    return DocumentPlan(merge_text_segments(segments), truncated=truncated, counts=counts)


def merge_text_segments(segments: Sequence[Segment]) -> list[Segment]:
    """Join neighbouring text segments (e.g. after a failed synthesis turned a span back into text), so the text
    between two speech spans is tokenized in one piece, exactly as in running text."""
    out: list[Segment] = []
    for seg in segments:
        if out and seg.modality == TEXT and out[-1].modality == TEXT:
            out[-1] = Segment(TEXT, out[-1].text + seg.text)
        elif seg.text:
            out.append(seg)
    return out


def assemble_example(
    segments: Sequence[Segment], token_ids: Sequence[Sequence[int]], vocab, eos_token_id: int | None = None
) -> tuple[list[int], list[dict[str, Any]]]:
    """Token ids of one document + readable segment records.

    `token_ids[i]` are text token ids for a text segment and speech ids (0..K-1) for a speech segment; `vocab` is a
    `SpeechVocab`. A speech segment becomes `<|begin_of_audio|> <|audio_*|>... <|end_of_audio|>`. Each record's
    `n_tokens` is what its segment occupies in `input_ids` (markers included), so the records tile `input_ids`
    (plus the final eos if given) and speech ids can be read back without storing them twice.
    """
    if len(segments) != len(token_ids):
        raise ValueError(f"{len(segments)} segments but {len(token_ids)} token lists")
    input_ids: list[int] = []
    records = []
    for seg, ids in zip(segments, token_ids):
        piece = vocab.wrap(ids) if seg.modality == SPEECH else [int(t) for t in ids]
        input_ids += piece
        records.append(
            {
                "modality": seg.modality,
                "text": seg.text.strip() if seg.modality == SPEECH else seg.text,
                "n_tokens": len(piece),
            }
        )
    if eos_token_id is not None:
        input_ids.append(int(eos_token_id))
    return input_ids, records


def speech_pieces(speech_text: str, min_words: int = 4) -> list[str]:
    """The pieces of a span the text-to-token model reads one by one: its sentences, each short one joined to a
    neighbour. The model learned from single sentences of a few words: given two sentences it tends to close
    `<|end_of_audio|>` after the first, given a one-word fragment ("bathroom.") it often never stops (measured on
    the demo model: 83% of one-word and 44% of three-word sentences ran away, 0% from four words)."""
    pieces: list[str] = []
    for a, b in split_units(speech_text, "sentence"):
        sentence = speech_text[a:b]
        if pieces and len(pieces[-1].split()) < min_words:
            pieces[-1] += " " + sentence
        else:
            pieces.append(sentence)
    if len(pieces) > 1 and len(pieces[-1].split()) < min_words:
        last = pieces.pop()
        pieces[-1] += " " + last
    return pieces or [speech_text]


__all__ = [
    "TEXT",
    "SPEECH",
    "GRANULARITIES",
    "DISTRIBUTIONS",
    "Segment",
    "DocumentPlan",
    "SpanLengthDistribution",
    "split_units",
    "sample_spans",
    "speakable_text",
    "plan_document",
    "merge_text_segments",
    "speech_pieces",
    "assemble_example",
]

"""The one sentence splitter: the text corpus cuts documents into sentences with it, the interleaved builder
cuts text into sentence units (span sampling) and speech spans into the sentences the text-to-token model reads.

Rule-based English (no model download), with two policies because the two callers need different things:

* ``strict=True`` (documents -> training sentences): a sentence ends at ``.``/``!``/``?`` (plus closing quotes
  or brackets) followed by whitespace *and* a capital or digit, not after a known abbreviation or a single
  capital initial (``Mr. Holmes``, ``H. G. Wells``). Fragments would become bad TTS prompts, so it errs long.
* ``strict=False`` (span units): any terminal punctuation (also ``…``, curly quotes) followed by whitespace, a
  line end, or the end of the text ends a unit. bAbI documents write a question and its answer as
  ``Where is Mary? bathroom.``; here the answer is a unit of its own.

Both return character ranges, so callers keep offsets into the original text.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr prof capt col gen lt rev hon mt no vs etc sgt maj messrs mme mlle esq ch vol fig".split()
)
_STRICT_END_RE = re.compile(r"([.!?]+[\"')\]]*)\s+(?=[\"'(\[]*[A-Z0-9])")
_LOOSE_RE = re.compile(r"\S(?:.*?)(?:[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)|(?=\n)|$)", re.S)


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + len(piece.rstrip())


def sentence_spans(text: str, strict: bool = True) -> list[tuple[int, int]]:
    """`(start, end)` character ranges of the sentences of `text`, in order, stripped, never empty."""
    if not strict:
        return [(m.start(), m.start() + len(m.group().rstrip())) for m in _LOOSE_RE.finditer(text)]
    spans, start = [], 0
    for m in _STRICT_END_RE.finditer(text):
        before = text[start : m.start()].rsplit(" ", 1)[-1].strip("\"'([")
        if m.group(1).startswith(".") and (before.lower() in ABBREVIATIONS or re.fullmatch(r"[A-Z]", before)):
            continue
        spans.append(_stripped(text, start, m.end(1)))
        start = m.end()
    spans.append(_stripped(text, start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def split_sentences(text: str, strict: bool = True) -> list[str]:
    """The sentences of `text` as strings (see `sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text, strict)]


__all__ = ["ABBREVIATIONS", "sentence_spans", "split_sentences"]

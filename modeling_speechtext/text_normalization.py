"""Text normalisation shared by the corpus builders, ASR scoring and evaluation.

Two levels, on purpose:

* `clean_text` / `normalize_whitespace` keep a text *readable* (case and punctuation kept) — what the corpora
  store and what the text LM is trained on.
* `normalize_text` is the *scoring* form: lowercase words, no punctuation, single spaces, digits kept. It is
  the speech tokenizer's ASR target and what WER is computed on, so reference and hypothesis must both pass
  through this one function (a second, slightly different normaliser somewhere would silently move WER).
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = "'\u2018\u2019\u02bc\u2032`"
_APOSTROPHE_RE = re.compile(f"[{re.escape(_APOSTROPHES)}]")
_WHITESPACE_RE = re.compile(r"\s+")
# Readable ASCII forms of typographic characters found in Gutenberg and web text.
_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u00a0": " ",
        "\u00ad": "",  # soft hyphen
        "\ufeff": "",  # byte-order mark
        "\u200b": "",  # zero-width space
    }
)
# The same rule as the general path, precomputed for ASCII: apostrophes deleted, other punctuation/symbols/controls
# become spaces.
_ASCII_SCORING = {
    i: ("" if chr(i) in _APOSTROPHES else " ") for i in range(128) if unicodedata.category(chr(i))[0] in "PSZC"
}
_DASH_RE = re.compile(r"\s*(?:\u2014|\u2015|--+)\s*")


def normalize_whitespace(text: str) -> str:
    """Every run of whitespace (tabs, newlines, NBSP) becomes one space; ends stripped."""
    return _WHITESPACE_RE.sub(" ", text).strip()


def clean_text(text: str) -> str:
    """Readable normal form: NFKC, ASCII quotes, ` - ` for em dashes and `--`, single spaces.

    Case and punctuation are kept: this is what documents and sentences store.
    """
    text = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY)
    text = _DASH_RE.sub(" - ", text)
    return normalize_whitespace(text)


def normalize_text(text: str) -> str:
    """Scoring form: lowercase, punctuation removed, whitespace collapsed, digits kept.

    Apostrophes are deleted (`don't` -> `dont`, so contractions stay one word); every other punctuation or
    symbol character becomes a space (`well-known` -> `well known`, `s,e` -> `s e`). Letters keep their
    accents. `normalize_text("Where is Mary? bathroom.") == "where is mary bathroom"`.
    """
    if text.isascii():  # fast path (the corpora are mostly ASCII): one C-level translate
        return normalize_whitespace(text.lower().translate(_ASCII_SCORING))
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHE_RE.sub("", text)
    chars = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in text]
    return normalize_whitespace("".join(chars))


def words(text: str) -> list[str]:
    """The scoring-form words of `text` (what vocabulary sizes and word counts are computed on)."""
    return normalize_text(text).split()


__all__ = ["normalize_whitespace", "clean_text", "normalize_text", "words"]

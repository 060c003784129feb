"""Open text (Gutenberg, the KJV, WordNet examples, fortunes, Hub records): strip licence boilerplate and junk,
read files in their format, cut documents into bounded chunks and sentences into clean, speakable ones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from modeling_speechtext import sentences
from modeling_speechtext.text_normalization import clean_text, normalize_whitespace, words

_GUTENBERG_HEADER_RE = re.compile(
    r"^\W*(?:start\W+of\W+(?:the\W+|this\W+)?project\W+gutenberg|end\W+(?:of\W+)?the\W+small\W+print)",
    re.IGNORECASE,
)
_GUTENBERG_FOOTER_RE = re.compile(
    r"^\W*(?:end\W+of\W+(?:the\W+|this\W+)?project\W+gutenberg|start\W+of\W+the\W+small\W+print"
    r"|\**\s*the\W+end\W+of\W+the\W+project\W+gutenberg)",
    re.IGNORECASE,
)
_GUTENBERG_PREAMBLE_RE = re.compile(
    r"^(produced by|this e-?(book|text) was produced|e-?text prepared by|transcriber'?s? note)", re.IGNORECASE
)
_BRACKET_NOTE_RE = re.compile(r"\[(?:illustration|footnote|sidenote|transcriber)[^\]]*\]", re.IGNORECASE)
_HEADING_RE = re.compile(r"^(chapter|book|part|volume|stave|canto)\b[\s\w.:-]*$", re.IGNORECASE)
_CHAPTER_SUMMARY_RE = re.compile(r"^(chapter|book|part)\s+([ivxlc]+|\d+)\b", re.IGNORECASE)
_VERSE_REF_RE = re.compile(r"^[1-3]?[A-Za-z]+\s?\d+:\d+\s+")
_FORTUNE_ATTRIBUTION_RE = re.compile(r"\s+--\s+[^.!?]*$")


def strip_gutenberg(text: str) -> str:
    """Remove the Project Gutenberg licence header and footer (modern ``*** START OF ...`` / ``*** END OF ...``,
    GITenberg's ``End of the Project Gutenberg EBook of ...``, and the old ``*END*THE SMALL PRINT!`` block) and
    a leading ``Produced by ...`` credit. Text without markers is returned unchanged (minus such a credit)."""
    lines = text.splitlines()
    start = 0
    # Headers sit at the top; looking only there keeps an old end-of-file small print from eating the book.
    for i, line in enumerate(lines[: max(len(lines) // 2, 400)]):
        if _GUTENBERG_HEADER_RE.match(line):
            start = i + 1
    end = len(lines)
    for i in range(start, len(lines)):
        if _GUTENBERG_FOOTER_RE.match(lines[i]):
            end = i
            break
    body = lines[start:end]
    # A credit paragraph ("Produced by ...") right at the top is not part of the book.
    first = next((i for i, line in enumerate(body) if line.strip()), None)
    if first is not None and _GUTENBERG_PREAMBLE_RE.match(body[first].strip()):
        stop = next((i for i in range(first, len(body)) if not body[i].strip()), len(body))
        body = body[stop:]
    return "\n".join(body).strip("\n")


def _is_junk_paragraph(lines: list[str]) -> bool:
    """Headings, tables of contents, title pages: no running prose."""
    text = " ".join(line.strip() for line in lines)
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    if sum(c.isupper() for c in letters) > 0.6 * len(letters):  # "CHAPTER I. DOWN THE RABBIT-HOLE"
        return True
    if len(text.split()) < 12 and _HEADING_RE.match(text.strip()):
        return True
    if len(text.split()) < 40 and _CHAPTER_SUMMARY_RE.match(text.strip()):  # "CHAPTER II. The Boys Escape Jim."
        return True
    if text.strip().lower().rstrip(".:") in {"the end", "finis", "contents", "table of contents"}:
        return True
    if len(text.split()) < 10 and text.rstrip()[-1] not in ".!?\"')":  # "By Mark Twain", "Contents:"
        return True
    stripped = [line.strip() for line in lines if line.strip()]
    if len(stripped) >= 3:
        mean_len = sum(map(len, stripped)) / len(stripped)
        ends = sum(line[-1] in ".!?;:,\"')" for line in stripped)
        if mean_len < 50 and ends <= 0.2 * len(stripped):  # a list of titles
            return True
    return False


def gutenberg_paragraphs(text: str) -> list[str]:
    """Cleaned prose paragraphs of a book (header/footer stripped, headings and contents dropped)."""
    body = strip_gutenberg(text)
    out = []
    for block in re.split(r"\n\s*\n", body):
        lines = block.splitlines()
        if _is_junk_paragraph(lines):
            continue
        # "_italics_" marks and the "|" some editions put before a drop capital are typography, not text.
        para = _BRACKET_NOTE_RE.sub(" ", " ".join(lines)).replace("_", "").lstrip(" |")
        para = clean_text(para)
        if para:
            out.append(para)
    return out


def _detect_format(path: Path, text: str) -> str:
    lines = text.splitlines()
    if "fortune" in path.name.lower() or any(line.strip() == "%" for line in lines):
        return "fortunes"
    blank = sum(1 for line in lines if not line.strip())
    if _GUTENBERG_HEADER_RE.search(text[:50_000]) or blank > 0.02 * max(1, len(lines)):
        return "paragraphs"
    return "lines"


def read_text_items(path: str | Path, file_format: str = "auto") -> tuple[list[str], str]:
    """A text file -> (cleaned items, format). Items are paragraphs (``paragraphs``), lines (``lines``, with
    ``Ge1:1``-style verse references stripped) or fortunes (``fortunes``: ``%``-separated records when ``%``
    lines are frequent, else one per line; trailing ``-- Author`` attributions dropped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    fmt = _detect_format(path, text) if file_format == "auto" else file_format
    if fmt == "paragraphs":
        return gutenberg_paragraphs(text), fmt
    lines = text.splitlines()
    if fmt == "fortunes":
        n_sep = sum(1 for line in lines if line.strip() == "%")
        if n_sep > 0.1 * max(1, len(lines) - n_sep):
            records = [" ".join(b.splitlines()) for b in re.split(r"(?m)^%\s*$", text)]
        else:
            records = [line for line in lines if line.strip() != "%"]
        items = [clean_text(_FORTUNE_ATTRIBUTION_RE.sub("", r)) for r in records]
    else:
        items = [clean_text(_VERSE_REF_RE.sub("", line)) for line in lines]
    return [x for x in items if x], fmt


def split_sentences(text: str) -> list[str]:
    """Sentences of a document, whitespace normalised (`modeling_speechtext.sentences`, the one splitter)."""
    return sentences.split_sentences(normalize_whitespace(text))


def clean_sentence(sentence: str, min_words: int, max_words: int) -> str | None:
    """A readable, speakable sentence, or None for junk (too short/long, shouting, symbols, URLs, lowercase
    fragments, boilerplate). Unbalanced double quotes are removed."""
    s = clean_text(sentence)
    if s.count('"') % 2:
        s = normalize_whitespace(s.replace('"', ""))
    n = len(words(s))
    if not min_words <= n <= max_words:
        return None
    lower = s.lower()
    if any(bad in lower for bad in ("http", "www.", "@", "gutenberg", "ebook", "copyright")):
        return None
    letters = [c for c in s if c.isalpha()]
    non_space = [c for c in s if not c.isspace()]
    if not letters or len(letters) < 0.7 * len(non_space):
        return None
    if sum(c.isupper() for c in letters) > 0.5 * len(letters):
        return None
    first = next(c for c in s if c.isalnum())
    if first.isalpha() and not first.isupper():
        return None
    if s[-1] not in ".!?\"')":
        return None
    return s


def chunk_items(items: list[str], max_words: int, joiner: str) -> Iterator[str]:
    """Consecutive items grouped into chunks of at most `max_words` words (one longer item is its own chunk)."""
    chunk: list[str] = []
    count = 0
    for item in items:
        n = len(item.split())
        if chunk and count + n > max_words:
            yield joiner.join(chunk)
            chunk, count = [], 0
        chunk.append(item)
        count += n
    if chunk:
        yield joiner.join(chunk)


__all__ = [
    "strip_gutenberg",
    "gutenberg_paragraphs",
    "read_text_items",
    "split_sentences",
    "clean_sentence",
    "chunk_items",
]

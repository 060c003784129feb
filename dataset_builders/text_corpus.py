"""Text corpus builder: documents (for the text LM and interleaving) and short sentences (for the speech corpus).

Three sources, one output contract (docs/STAGES.md):

* ``tiny_world`` (the ``demo``/``tiny``/``micro`` presets): the closed-vocabulary world of the bAbI tasks
  (``qa/babi/tasks_1-20_v1-2/en`` under the data root). CPU-scale models cannot learn open-vocabulary speech,
  but they can learn a 150-word world end to end (see DESIGN.md, "The tiny world").
* ``files``: local text files or folders (by default ``text/`` under the data root: Gutenberg novels with their
  licence headers stripped, the KJV, WordNet examples, fortunes), for larger presets.
* ``hub``: any Hub text dataset by name, e.g. FineWeb-Edu, streamed so only the first ``max_documents``
  records are ever downloaded::

      source: hub
      hub_dataset: HuggingFaceFW/fineweb-edu
      hub_config: sample-10BT
      hub_split: train
      text_column: text
      streaming: true
      max_documents: 200000

Output (``output_dir``): ``documents/`` and ``sentences/`` (``DatasetDict`` with splits train/validation/test,
columns ``id``, ``text``, ``source``), for the tiny world also ``qa/`` (``id``, ``task``, ``story``,
``question``, ``answer``), and ``stats.json`` (vocabulary size and word counts per split).

The tiny-world document format. One bAbI story is one document, one sentence per line, each question
followed on its line by its answer::

    Mary moved to the bathroom.
    John went to the hallway.
    Where is Mary? bathroom.

Normalisation: statements start with a capital and end with ``.``, questions end with ``?``; the answer keeps
bAbI's case (lowercase words, capitalised names) and ends with ``.``; list answers are joined with ``, ``
(``apple, milk``); qa19's compass letters are spelled out (``s,e`` -> ``south, east``) so every answer is
speakable; names are capitalised everywhere (qa20's questions write them in lowercase). The ``qa/`` rows
carry exactly that answer string (without the final ``.``), so an LM trained on documents and prompted with
``story + "\\n" + question`` should continue with `` <answer>.``. ``story`` holds only the statements before
the question, not earlier questions.

Splits: documents and qa follow bAbI's train/test; ``validation`` is a seeded ``validation_fraction`` slice of
each task's train stories. Sentences are drawn from train documents only (unique statements, questions, and
``question answer.`` lines) plus ``num_templated_sentences`` templated ones (bAbI's own sentences with names,
places, objects, animals, colours ... swapped for others of the same kind seen in train), deduplicated on
their scoring form, then assigned to train/validation/test by a seeded hash of that form, so a held-out
sentence never appears in train, and nothing derived from validation/test stories reaches the sentences.
Sentence rows come in a seeded random order, so any prefix is a fair sample.

For ``files``/``hub`` documents are chunks of at most ``max_document_words`` words (paragraph boundaries kept),
split by a seeded hash of their id; their sentences inherit the split, are filtered for junk and
deduplicated with train taking precedence.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeling_speechtext import sentences
from modeling_speechtext.paths import resolve_data_path
from modeling_speechtext.text_normalization import clean_text, normalize_text, normalize_whitespace, words

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SOURCES = ("tiny_world", "files", "hub")
FILE_FORMATS = ("auto", "paragraphs", "lines", "fortunes")
DEFAULT_BABI_DIR = "qa/babi/tasks_1-20_v1-2/en"


# --------------------------------------------------------------------------------------------------- config


@dataclass
class TextCorpusConfig:
    """What to build. Fields not used by the chosen ``source`` are ignored."""

    source: str = "tiny_world"
    seed: int = 0
    # tiny world
    babi_dir: str = DEFAULT_BABI_DIR
    tasks: list[int] = field(default_factory=lambda: list(range(1, 21)))
    max_stories: int | None = None
    """Keep only the first N stories of each task file (train and test): quick presets."""
    num_templated_sentences: int = 5000
    sentence_validation_fraction: float = 0.05
    sentence_test_fraction: float = 0.05
    # tiny world: fraction of bAbI train stories held out; files/hub: fraction of documents
    validation_fraction: float = 0.1
    test_fraction: float = 0.05
    """files/hub only: bAbI brings its own test split."""
    # files
    paths: list[str] = field(default_factory=lambda: ["text"])
    file_format: str = "auto"
    # hub
    hub_dataset: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    text_column: str = "text"
    streaming: bool = True
    max_documents: int | None = 10_000
    # shared filters
    min_sentence_words: int = 3
    max_sentence_words: int = 30
    min_document_words: int = 20
    max_document_words: int = 1024

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TextCorpusConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"text_corpus config: unknown key(s) {unknown}; known keys are {sorted(known)}")
        cfg = cls(**config)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"text_corpus config: source must be one of {SOURCES}, got {self.source!r}")
        if self.file_format not in FILE_FORMATS:
            raise ValueError(
                f"text_corpus config: file_format must be one of {FILE_FORMATS}, got {self.file_format!r}"
            )
        for name in ("validation_fraction", "test_fraction", "sentence_validation_fraction", "sentence_test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"text_corpus config: {name} must be in [0, 1), got {value}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("text_corpus config: validation_fraction + test_fraction must be < 1")
        if self.sentence_validation_fraction + self.sentence_test_fraction >= 1.0:
            raise ValueError("text_corpus config: sentence_validation_fraction + sentence_test_fraction must be < 1")
        if not 1 <= self.min_sentence_words <= self.max_sentence_words:
            raise ValueError(
                f"text_corpus config: need 1 <= min_sentence_words <= max_sentence_words, "
                f"got {self.min_sentence_words}, {self.max_sentence_words}"
            )
        if self.max_document_words < 1 or self.min_document_words < 0:
            raise ValueError("text_corpus config: max_document_words must be >= 1 and min_document_words >= 0")
        if self.source == "tiny_world":
            bad = [t for t in self.tasks if not isinstance(t, int) or not 1 <= t <= 20]
            if not self.tasks or bad:
                raise ValueError(
                    f"text_corpus config: tasks must be a non-empty list of ints in 1..20, got {self.tasks}"
                )
            if self.num_templated_sentences < 0:
                raise ValueError("text_corpus config: num_templated_sentences must be >= 0")
        if self.source == "files" and not self.paths:
            raise ValueError("text_corpus config: source 'files' needs `paths` (files or folders)")
        if self.source == "hub" and not self.hub_dataset:
            raise ValueError("text_corpus config: source 'hub' needs `hub_dataset` (e.g. HuggingFaceFW/fineweb-edu)")


# ------------------------------------------------------------------------------------------------ helpers


def _unit_hash(*parts: Any) -> float:
    """A stable number in [0, 1) (unlike ``hash()``, identical in every process)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _assign_split(fraction_validation: float, fraction_test: float, *key: Any) -> str:
    u = _unit_hash(*key)
    if u < fraction_validation:
        return "validation"
    if u < fraction_validation + fraction_test:
        return "test"
    return "train"


# ---------------------------------------------------------------------------------------------------- bAbI


@dataclass(frozen=True)
class BabiQuestion:
    line_id: int
    question: str
    answer: str
    supporting: tuple[int, ...]
    context: tuple[str, ...]
    """The raw statements of the story before this question."""


@dataclass
class BabiStory:
    task: int
    origin: str  # bAbI file split: "train" or "test"
    index: int  # 0-based position in its file
    lines: list[tuple[str, Any]]  # ("statement", str) or ("question", BabiQuestion), in story order

    @property
    def statements(self) -> list[str]:
        return [x for kind, x in self.lines if kind == "statement"]

    @property
    def questions(self) -> list[BabiQuestion]:
        return [x for kind, x in self.lines if kind == "question"]


_BABI_LINE_RE = re.compile(r"^(\d+) (.*)$")
_BABI_QUESTION_SEP_RE = re.compile(r"\t|\|")


def parse_babi_file(path: str | Path, task: int = 0, origin: str = "train") -> list[BabiStory]:
    """Parse one bAbI file: ``ID text`` lines; IDs restart at 1 for each story.

    Question lines are ``ID question<sep>answer<sep>supporting ids`` where ``<sep>`` is a TAB (the original
    format) or ``|`` (this copy's qa1 files); both are accepted in any file.
    """
    path = Path(path)
    stories: list[BabiStory] = []
    story: BabiStory | None = None
    expected = 1
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            m = _BABI_LINE_RE.match(line)
            if m is None:
                raise ValueError(f"{path}:{lineno}: expected 'ID text', got {line[:80]!r}")
            line_id, rest = int(m.group(1)), m.group(2)
            if line_id == 1:
                story = BabiStory(task=task, origin=origin, index=len(stories), lines=[])
                stories.append(story)
                expected = 1
            if story is None or line_id != expected:
                raise ValueError(f"{path}:{lineno}: line id {line_id} out of order (expected {expected})")
            expected += 1
            if _BABI_QUESTION_SEP_RE.search(rest):
                parts = [p.strip() for p in _BABI_QUESTION_SEP_RE.split(rest)]
                if len(parts) != 3 or not parts[0] or not parts[1]:
                    raise ValueError(
                        f"{path}:{lineno}: a question line needs 'question<TAB or |>answer<TAB or |>ids', got {rest!r}"
                    )
                try:
                    supporting = tuple(int(x) for x in parts[2].split())
                except ValueError:
                    raise ValueError(
                        f"{path}:{lineno}: supporting fact ids must be integers, got {parts[2]!r}"
                    ) from None
                story.lines.append(
                    ("question", BabiQuestion(line_id, parts[0], parts[1], supporting, tuple(story.statements)))
                )
            else:
                story.lines.append(("statement", rest.strip()))
    return stories


def find_babi_file(babi_dir: Path, task: int, split: str) -> Path:
    matches = sorted(babi_dir.glob(f"qa{task}_*_{split}.txt"))
    if len(matches) != 1:
        raise FileNotFoundError(f"{babi_dir}: expected one file qa{task}_*_{split}.txt, found {len(matches)}")
    return matches[0]


# The people of bAbI. qa20 writes them in lowercase inside questions; they are capitalised everywhere.
BABI_NAMES = frozenset(
    "mary sandra john daniel fred bill jeff julie emily gertrude jessica winona jason antoine yann sumit "
    "lily julius greg brian bernhard".split()
)
# Word classes whose members can stand in for each other in any bAbI sentence pattern (templating).
# Words outside every class ("the", "is", "left", "sheep" (singular and plural)) stay as they are.
BABI_WORD_CLASSES: dict[str, frozenset[str]] = {
    "name": BABI_NAMES,
    "place": frozenset("kitchen bedroom office garden hallway bathroom school park cinema".split()),
    "object": frozenset("apple football milk pajamas".split()),
    "motion_verb": frozenset("moved went travelled journeyed".split()),
    "take_verb": frozenset("got grabbed took".split()),
    "drop_verb": frozenset("dropped discarded".split()),
    "give_verb": frozenset("gave handed passed".split()),
    "animal": frozenset("cat mouse wolf frog lion swan rhino".split()),
    "animals": frozenset("cats mice wolves".split()),
    "colour": frozenset("yellow green white gray red pink blue".split()),
    "shape": frozenset("square rectangle triangle sphere".split()),
    "container": frozenset("box chest suitcase container chocolate".split()),
    "direction": frozenset("north south east west".split()),
    "daytime": frozenset("morning afternoon evening".split()),
    "feeling": frozenset("bored tired thirsty hungry".split()),
    "position": frozenset("above below".split()),
}
_COMPASS = {"n": "north", "s": "south", "e": "east", "w": "west"}
_WORD_RE = re.compile(r"[A-Za-z]+")


def _capitalize_names(text: str, names: frozenset[str]) -> str:
    return _WORD_RE.sub(lambda m: m.group(0).capitalize() if m.group(0).lower() in names else m.group(0), text)


@functools.lru_cache(maxsize=65536)  # bAbI repeats a few thousand sentences ~700k times (story contexts)
def render_babi_sentence(text: str, end: str = ".", names: frozenset[str] = BABI_NAMES) -> str:
    """``"where will sumit go?"`` -> ``"Where will Sumit go?"``: capitalised, names capitalised, one end mark."""
    text = _capitalize_names(clean_text(text).rstrip(" .?!"), names)
    if not text:
        raise ValueError("empty bAbI sentence")
    return text[0].upper() + text[1:] + end


def render_babi_answer(answer: str, names: frozenset[str] = BABI_NAMES) -> str:
    """bAbI's answer field -> the answer as written in documents and qa rows (no final period).

    ``"apple,milk"`` -> ``"apple, milk"``; qa19's ``"s,e"`` -> ``"south, east"``; ``"bill"`` -> ``"Bill"``.
    """
    parts = [p.strip() for p in answer.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"empty bAbI answer {answer!r}")
    if all(p.lower() in _COMPASS for p in parts):
        parts = [_COMPASS[p.lower()] for p in parts]
    return ", ".join(_capitalize_names(p, names) for p in parts)


def render_qa_line(question: BabiQuestion) -> str:
    return f"{render_babi_sentence(question.question, '?')} {render_babi_answer(question.answer)}."


def render_babi_story(story: BabiStory) -> str:
    """One document: a sentence per line, each question followed by its answer (see the module docstring)."""
    out = []
    for kind, item in story.lines:
        out.append(render_babi_sentence(item) if kind == "statement" else render_qa_line(item))
    return "\n".join(out)


def _fill_template(pattern: str, allowed: dict[str, list[str]], rng: random.Random) -> str | None:
    """Swap each class word in `pattern` for another allowed word of its class, consistently within the
    sentence (``Mary ... Mary`` stays one person) and distinct (two places stay two places)."""
    found: dict[str, list[str]] = {}
    for w in _WORD_RE.findall(pattern):
        lw = w.lower()
        for cls, members in BABI_WORD_CLASSES.items():
            if lw in members and lw in allowed.get(cls, ()):
                if lw not in found.setdefault(cls, []):
                    found[cls].append(lw)
                break
    if not found:
        return None
    mapping: dict[str, str] = {}
    for cls, originals in found.items():
        pool = allowed[cls]
        if len(pool) < len(originals):
            return None
        for orig, new in zip(originals, rng.sample(pool, len(originals))):
            mapping[orig] = new

    def swap(m: re.Match) -> str:
        w = m.group(0)
        new = mapping.get(w.lower())
        if new is None:
            return w
        return new.capitalize() if w[0].isupper() or new in BABI_NAMES else new

    return _WORD_RE.sub(swap, pattern)


def templated_sentences(
    patterns: Iterable[str], vocabulary: set[str], n: int, seed: int, exclude: set[str] | None = None
) -> list[str]:
    """`n` new sentences from bAbI sentence `patterns`, using only words in `vocabulary` (closure).

    Stops early (fewer than `n`) when the patterns cannot produce more distinct sentences.
    """
    allowed = {cls: sorted(m & vocabulary) for cls, m in BABI_WORD_CLASSES.items()}
    patterns = sorted(set(patterns))
    rng = random.Random(f"templates-{seed}")
    seen = set(exclude or ())
    out: list[str] = []
    attempts, max_attempts = 0, 50 * n + 1000
    while len(out) < n and attempts < max_attempts and patterns:
        attempts += 1
        sentence = _fill_template(rng.choice(patterns), allowed, rng)
        if sentence is None:
            continue
        key = normalize_text(sentence)
        if key in seen or not set(key.split()) <= vocabulary:
            continue
        seen.add(key)
        out.append(sentence)
    if len(out) < n:
        logger.warning("templated sentences: produced %d of %d requested (patterns exhausted)", len(out), n)
    return out


# ---------------------------------------------------------------------------------------------- open text

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


# ----------------------------------------------------------------------------------------- corpus assembly


@dataclass
class _Corpus:
    documents: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    sentences: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    qa: dict[str, list[dict[str, Any]]] | None = None
    extra_stats: dict[str, Any] = field(default_factory=dict)


def _build_tiny_world(cfg: TextCorpusConfig) -> _Corpus:
    babi_dir = resolve_data_path(cfg.babi_dir)
    corpus = _Corpus(qa={s: [] for s in SPLITS})
    train_stories: list[BabiStory] = []
    for task in sorted(set(cfg.tasks)):
        by_origin = {}
        for origin in ("train", "test"):
            stories = parse_babi_file(find_babi_file(babi_dir, task, origin), task, origin)
            by_origin[origin] = stories[: cfg.max_stories] if cfg.max_stories else stories
        train = by_origin["train"]
        n_val = round(len(train) * cfg.validation_fraction)
        if cfg.validation_fraction > 0 and n_val == 0 and len(train) >= 2:
            n_val = 1
        val_ids = set(random.Random(f"validation-{cfg.seed}-{task}").sample(range(len(train)), n_val))
        assigned = [("validation" if s.index in val_ids else "train", s) for s in train]
        assigned += [("test", s) for s in by_origin["test"]]
        for split, story in assigned:
            doc_id = f"qa{task}-{story.origin}-{story.index:04d}"
            corpus.documents[split].append(
                {"id": doc_id, "text": render_babi_story(story), "source": f"babi/qa{task}"}
            )
            for q in story.questions:
                corpus.qa[split].append(
                    {
                        "id": f"{doc_id}-{q.line_id:02d}",
                        "task": task,
                        "story": "\n".join(render_babi_sentence(s) for s in q.context),
                        "question": render_babi_sentence(q.question, "?"),
                        "answer": render_babi_answer(q.answer),
                    }
                )
            if split == "train":
                train_stories.append(story)

    # The sentence pool: train stories only, so nothing of validation/test stories leaks into sentences.
    pool: dict[str, tuple[str, str]] = {}  # scoring form -> (text, source)

    def add(text: str, source: str) -> None:
        n = len(words(text))
        if cfg.min_sentence_words <= n <= cfg.max_sentence_words:
            pool.setdefault(normalize_text(text), (text, source))

    patterns = []
    for story in train_stories:
        for kind, item in story.lines:
            if kind == "statement":
                text = render_babi_sentence(item)
                add(text, "babi_statement")
                patterns.append(text)
            else:
                text = render_babi_sentence(item.question, "?")
                add(text, "babi_question")
                patterns.append(text)
                add(render_qa_line(item), "babi_qa")
    train_vocab = {w for doc in corpus.documents["train"] for w in words(doc["text"])}
    n_real = len(pool)
    for text in templated_sentences(patterns, train_vocab, cfg.num_templated_sentences, cfg.seed, set(pool)):
        add(text, "templated")
    for key in sorted(pool):
        text, source = pool[key]
        split = _assign_split(cfg.sentence_validation_fraction, cfg.sentence_test_fraction, "sentence", cfg.seed, key)
        corpus.sentences[split].append({"id": f"sent-{_short_hash(key)}", "text": text, "source": source})
    for split in SPLITS:
        random.Random(f"order-{cfg.seed}-{split}").shuffle(corpus.sentences[split])
    corpus.extra_stats = {
        "babi_dir": str(babi_dir),
        "tasks": sorted(set(cfg.tasks)),
        "babi_sentences": n_real,
        "templated_sentences": len(pool) - n_real,
    }
    return corpus


def _sentences_from_documents(corpus: _Corpus, cfg: TextCorpusConfig) -> None:
    """Split every document into clean sentences; dedupe on the scoring form, train first, then validation,
    then test, so a held-out sentence never occurs in train (nor in both held-out splits)."""
    seen: set[str] = set()
    for split in SPLITS:
        for doc in corpus.documents[split]:
            for i, raw in enumerate(split_sentences(doc["text"])):
                s = clean_sentence(raw, cfg.min_sentence_words, cfg.max_sentence_words)
                if s is None:
                    continue
                key = normalize_text(s)
                if key in seen:
                    continue
                seen.add(key)
                corpus.sentences[split].append({"id": f"{doc['id']}-s{i:04d}", "text": s, "source": doc["source"]})


def _add_document(corpus: _Corpus, cfg: TextCorpusConfig, doc_id: str, text: str, source: str) -> bool:
    if len(text.split()) < cfg.min_document_words:
        return False
    split = _assign_split(cfg.validation_fraction, cfg.test_fraction, "document", cfg.seed, doc_id)
    corpus.documents[split].append({"id": doc_id, "text": text, "source": source})
    return True


def _iter_text_files(entries: Iterable[str]) -> Iterator[tuple[Path, str]]:
    for entry in entries:
        root = resolve_data_path(entry)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*.txt") if p.is_file())
            if not files:
                raise FileNotFoundError(f"{root}: no .txt files in this folder")
            for p in files:
                yield p, p.relative_to(root.parent).with_suffix("").as_posix()
        elif root.is_file():
            yield root, root.with_suffix("").name
        else:
            raise FileNotFoundError(f"{entry}: not a file or folder")


def _build_from_files(cfg: TextCorpusConfig) -> _Corpus:
    corpus = _Corpus()
    formats = {}
    for path, source in _iter_text_files(cfg.paths):
        items, fmt = read_text_items(path, cfg.file_format)
        formats[source] = fmt
        joiner = "\n\n" if fmt == "paragraphs" else "\n"
        for i, chunk in enumerate(chunk_items(items, cfg.max_document_words, joiner)):
            _add_document(corpus, cfg, f"{source}-{i:05d}", chunk, source)
    _sentences_from_documents(corpus, cfg)
    corpus.extra_stats = {"file_formats": formats}
    return corpus


def _default_hub_loader(cfg: TextCorpusConfig) -> Iterable[dict[str, Any]]:
    from datasets import load_dataset

    return load_dataset(cfg.hub_dataset, cfg.hub_config, split=cfg.hub_split, streaming=cfg.streaming)


def _build_from_hub(cfg: TextCorpusConfig, hub_loader: Callable[[TextCorpusConfig], Iterable[dict]]) -> _Corpus:
    corpus = _Corpus()
    dataset = hub_loader(cfg)
    from tqdm.auto import tqdm

    records = itertools.islice(dataset, cfg.max_documents) if cfg.max_documents else dataset
    n_records = 0
    progress = tqdm(records, total=cfg.max_documents, desc=f"text_corpus: {cfg.hub_dataset}", unit="doc")
    for i, record in enumerate(progress):
        n_records += 1
        if cfg.text_column not in record:
            raise ValueError(
                f"hub dataset {cfg.hub_dataset}: no column {cfg.text_column!r} (columns: {sorted(record)}); "
                "set text_column"
            )
        paragraphs = [clean_text(p) for p in re.split(r"\n\s*\n|\n", record[cfg.text_column] or "")]
        paragraphs = [p for p in paragraphs if p]
        for j, chunk in enumerate(chunk_items(paragraphs, cfg.max_document_words, "\n")):
            _add_document(corpus, cfg, f"{i:08d}-{j:03d}", chunk, cfg.hub_dataset)
    _sentences_from_documents(corpus, cfg)
    corpus.extra_stats = {"hub_dataset": cfg.hub_dataset, "hub_config": cfg.hub_config, "hub_records": n_records}
    return corpus


# ------------------------------------------------------------------------------------------------- output


def _vocab(rows: Iterable[dict[str, str]]) -> Counter:
    counts: Counter = Counter()
    for row in rows:
        counts.update(words(row["text"]))
    return counts


def corpus_stats(corpus: _Corpus, cfg: TextCorpusConfig) -> dict[str, Any]:
    split_stats: dict[str, Any] = {}
    vocab_all: Counter = Counter()
    train_vocab: set[str] = set()
    for split in SPLITS:
        doc_vocab = _vocab(corpus.documents[split])
        sent_vocab = _vocab(corpus.sentences[split])
        vocab = doc_vocab + sent_vocab
        vocab_all.update(vocab)
        if split == "train":
            train_vocab = set(vocab)
        split_stats[split] = {
            "documents": len(corpus.documents[split]),
            "document_words": sum(doc_vocab.values()),
            "sentences": len(corpus.sentences[split]),
            "sentence_words": sum(sent_vocab.values()),
            "vocabulary_size": len(vocab),
            "sentence_sources": dict(sorted(Counter(r["source"] for r in corpus.sentences[split]).items())),
        }
        if split != "train":
            split_stats[split]["words_not_in_train"] = len(set(vocab) - train_vocab)
        if corpus.qa is not None:
            split_stats[split]["qa"] = len(corpus.qa[split])
    total_words = sum(s["document_words"] for s in split_stats.values())
    stats = {
        "source": cfg.source,
        "vocabulary_size": len(vocab_all),
        "train_vocabulary_size": len(train_vocab),
        "document_words": total_words,
        "sentence_words": sum(s["sentence_words"] for s in split_stats.values()),
        "splits": split_stats,
        "config": dataclasses.asdict(cfg),
        **corpus.extra_stats,
    }
    if cfg.source == "tiny_world" or len(vocab_all) <= 1000:
        stats["vocabulary"] = sorted(vocab_all)
    else:
        stats["top_words"] = [w for w, _ in vocab_all.most_common(100)]
    return stats


def _save(rows: dict[str, list[dict[str, Any]]], features, path: Path) -> None:
    from datasets import Dataset, DatasetDict

    columns = list(features)
    dd = DatasetDict(
        {
            split: Dataset.from_dict({c: [r[c] for r in rows[split]] for c in columns}, features=features)
            for split in SPLITS
        }
    )
    if path.exists():
        shutil.rmtree(path)
    dd.save_to_disk(str(path))


def build_text_corpus(
    config: TextCorpusConfig | dict[str, Any],
    output_dir: str | Path,
    *,
    hub_loader: Callable[[TextCorpusConfig], Iterable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Build the corpus into `output_dir`; returns the statistics also written to ``stats.json``.

    `hub_loader(config)` returns the records (dicts) of a Hub dataset; the default streams it with
    ``datasets.load_dataset``. Tests inject an in-memory dataset here.
    """
    from datasets import Features, Value

    cfg = config if isinstance(config, TextCorpusConfig) else TextCorpusConfig.from_dict(config)
    cfg.validate()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.source == "tiny_world":
        corpus = _build_tiny_world(cfg)
    elif cfg.source == "files":
        corpus = _build_from_files(cfg)
    else:
        corpus = _build_from_hub(cfg, hub_loader or _default_hub_loader)
    if not corpus.documents["train"] or not corpus.sentences["train"]:
        raise ValueError(f"text_corpus ({cfg.source}): no train documents or sentences survived cleaning")

    text_features = Features({"id": Value("string"), "text": Value("string"), "source": Value("string")})
    _save(corpus.documents, text_features, output_dir / "documents")
    _save(corpus.sentences, text_features, output_dir / "sentences")
    if corpus.qa is not None:
        qa_features = Features(
            {
                "id": Value("string"),
                "task": Value("int32"),
                "story": Value("string"),
                "question": Value("string"),
                "answer": Value("string"),
            }
        )
        _save(corpus.qa, qa_features, output_dir / "qa")
    stats = corpus_stats(corpus, cfg)
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def run_stage(config: dict[str, Any], output_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Pipeline entry point: build the corpus, return the headline numbers (full detail in stats.json)."""
    stats = build_text_corpus(TextCorpusConfig.from_dict(dict(config)), output_dir)
    metrics: dict[str, Any] = {
        "source": stats["source"],
        "vocabulary_size": stats["vocabulary_size"],
        "document_words": stats["document_words"],
        "sentence_words": stats["sentence_words"],
    }
    for split, s in stats["splits"].items():
        metrics[f"{split}_documents"] = s["documents"]
        metrics[f"{split}_sentences"] = s["sentences"]
        if "qa" in s:
            metrics[f"{split}_qa"] = s["qa"]
    return metrics


__all__ = [
    "TextCorpusConfig",
    "BabiQuestion",
    "BabiStory",
    "BABI_NAMES",
    "BABI_WORD_CLASSES",
    "parse_babi_file",
    "find_babi_file",
    "render_babi_sentence",
    "render_babi_answer",
    "render_qa_line",
    "render_babi_story",
    "templated_sentences",
    "strip_gutenberg",
    "gutenberg_paragraphs",
    "read_text_items",
    "split_sentences",
    "clean_sentence",
    "chunk_items",
    "corpus_stats",
    "build_text_corpus",
    "run_stage",
]

"""bAbI: parse the task files, render stories, questions and answers in the tiny-world document format, and
draw templated sentences from bAbI's own vocabulary (swaps within a word class seen in train)."""

from __future__ import annotations

import functools
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeling_speechtext.text_normalization import clean_text, normalize_text

logger = logging.getLogger(__name__)


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


__all__ = [
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
]

"""More bAbI train stories by consistent renaming: each copy of a story renames its people (within a gender),
places and objects by one random permutation, answers included.

Why: bAbI v1.2 ships 1k questions (~200 stories) per task. A small LM trained on three tasks sees those stories
dozens of times within a few minutes and memorises them (measured, docs/SPEECH_TEXT_LM.md: its validation loss
rose from 0.64 to 1.53 between 300 and 1200 steps, and whether it learnt to answer at all depended on the seed).
bAbI's own generator is a simulation whose stories differ in exactly these fillers, and the 10k-question release
is not in the offline data. A renamed story is a valid story of the same task: who went where, and so every
answer, moves with the renaming; the vocabulary stays the task's own. Only train stories are copied, so
validation and test (bAbI's test file) stay untouched.

Where renaming is not valid: task 20 ties places to motives ("hungry" -> kitchen), so it is refused. Names keep
their gender because task 11 refers back with "he"/"she".
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from .babi import BABI_WORD_CLASSES, BabiQuestion, BabiStory

# The people of bAbI by the pronoun its stories use for them (every name of BABI_NAMES is in exactly one).
BABI_FEMALE_NAMES = frozenset("mary sandra julie emily gertrude jessica winona lily".split())
BABI_MALE_NAMES = frozenset("john daniel fred bill jeff jason antoine yann sumit julius greg brian bernhard".split())
# The classes renamed; the others (verbs, animals, colours, directions...) carry the task's logic.
RENAMED_CLASSES: dict[str, frozenset[str]] = {
    "female": BABI_FEMALE_NAMES,
    "male": BABI_MALE_NAMES,
    "place": BABI_WORD_CLASSES["place"],
    "object": BABI_WORD_CLASSES["object"],
}
# Tasks whose answers depend on what a place or name *is*, not only on the story: renaming would make them false.
NOT_RENAMABLE_TASKS = frozenset({20})
_WORD_RE = re.compile(r"[A-Za-z]+")


def story_vocabulary(stories: Iterable[BabiStory]) -> dict[str, list[str]]:
    """The members of each renamed class that occur in `stories` (a task's train stories): copies only use these,
    so the corpus vocabulary does not grow."""
    seen: set[str] = set()
    for story in stories:
        for kind, item in story.lines:
            texts = [item] if kind == "statement" else [item.question, item.answer]
            for text in texts:
                seen.update(w.lower() for w in _WORD_RE.findall(text))
    return {cls: sorted(members & seen) for cls, members in RENAMED_CLASSES.items()}


def _rename(text: str, mapping: dict[str, str]) -> str:
    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = mapping.get(word.lower())
        if new is None:
            return word
        return new.capitalize() if word[0].isupper() else new

    return _WORD_RE.sub(swap, text)


def renamed_story(story: BabiStory, vocabulary: dict[str, list[str]], rng: random.Random) -> BabiStory:
    """One copy of `story` under a random permutation of each class of `vocabulary` (identity is possible)."""
    mapping: dict[str, str] = {}
    for members in vocabulary.values():
        shuffled = list(members)
        rng.shuffle(shuffled)
        mapping.update(zip(members, shuffled))
    lines: list[tuple[str, object]] = []
    statements: list[str] = []
    for kind, item in story.lines:
        if kind == "statement":
            text = _rename(item, mapping)
            statements.append(text)
            lines.append(("statement", text))
        else:
            q: BabiQuestion = item
            lines.append(
                (
                    "question",
                    BabiQuestion(
                        q.line_id,
                        _rename(q.question, mapping),
                        _rename(q.answer, mapping),
                        q.supporting,
                        tuple(statements),
                    ),
                )
            )
    return BabiStory(task=story.task, origin=story.origin, index=story.index, lines=lines)


def renamed_copies(stories: list[BabiStory], copies: int, seed: int) -> list[tuple[int, BabiStory]]:
    """`(copy number, story)` for `copies` renamed copies of every story (one task's train stories), copy-major:
    reproducible for a seed, and the first k copies of a larger request are the k copies of a smaller one."""
    if not stories or copies <= 0:
        return []
    task = stories[0].task
    if task in NOT_RENAMABLE_TASKS:
        raise ValueError(f"bAbI task {task} cannot be augmented by renaming (its answers depend on what a place is)")
    vocabulary = story_vocabulary(stories)
    out = []
    for k in range(1, copies + 1):
        for story in stories:
            rng = random.Random(f"rename-{seed}-{task}-{story.index}-{k}")
            out.append((k, renamed_story(story, vocabulary, rng)))
    return out


__all__ = [
    "BABI_FEMALE_NAMES",
    "BABI_MALE_NAMES",
    "NOT_RENAMABLE_TASKS",
    "RENAMED_CLASSES",
    "story_vocabulary",
    "renamed_story",
    "renamed_copies",
]

"""The text corpus config (every field as in `recipes/configs/<preset>/text_corpus.yaml`) and the seeded
split hashes: the split of a document or sentence is a pure function of its key, identical in every process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..stage_config import config_from_dict

SPLITS = ("train", "validation", "test")
SOURCES = ("tiny_world", "files", "hub")
FILE_FORMATS = ("auto", "paragraphs", "lines", "fortunes")
DEFAULT_BABI_DIR = "qa/babi/tasks_1-20_v1-2/en"


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
    augment_tasks: list[int] = field(default_factory=list)
    """Tasks whose train stories get renamed copies (`augment.py`: people, places, objects permuted)."""
    augment_copies: int = 0
    """Renamed copies of each train story of `augment_tasks` (train split only; ids `<story id>-rename<k>`)."""
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
        return config_from_dict(cls, config, "text_corpus")

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
            if not isinstance(self.augment_tasks, list) or not all(isinstance(t, int) for t in self.augment_tasks):
                raise ValueError(
                    f"text_corpus config: augment_tasks must be a list of task numbers, got {self.augment_tasks!r}"
                )
            if bool(self.augment_tasks) != (self.augment_copies > 0):
                raise ValueError(
                    "text_corpus config: augment_tasks and augment_copies go together (tasks to copy and copies > 0), "
                    f"got {self.augment_tasks} and {self.augment_copies}"
                )
            if self.augment_copies < 0:
                raise ValueError(f"text_corpus config: augment_copies must be >= 0, got {self.augment_copies}")
            stray = sorted(set(self.augment_tasks) - set(self.tasks))
            if stray:
                raise ValueError(f"text_corpus config: augment_tasks {stray} are not in tasks {self.tasks}")
            if 20 in self.augment_tasks:
                raise ValueError(
                    "text_corpus config: augment_tasks cannot hold task 20 (its answers depend on what a place is, "
                    "so renaming places would make them false)"
                )
            if self.num_templated_sentences < 0:
                raise ValueError("text_corpus config: num_templated_sentences must be >= 0")
        if self.source != "tiny_world" and (self.augment_tasks or self.augment_copies):
            raise ValueError("text_corpus config: augment_tasks / augment_copies rename bAbI stories: tiny_world only")
        if self.source == "files" and not self.paths:
            raise ValueError("text_corpus config: source 'files' needs `paths` (files or folders)")
        if self.source == "hub" and not self.hub_dataset:
            raise ValueError("text_corpus config: source 'hub' needs `hub_dataset` (e.g. HuggingFaceFW/fineweb-edu)")


# split hashes


def unit_hash(*parts: Any) -> float:
    """A stable number in [0, 1) (unlike ``hash()``, identical in every process)."""
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def short_hash(text: str) -> str:
    """A short stable id for a sentence, from its scoring form."""
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def assign_split(fraction_validation: float, fraction_test: float, *key: Any) -> str:
    """The split of `key`: validation, test or train by where its stable hash falls."""
    u = unit_hash(*key)
    if u < fraction_validation:
        return "validation"
    if u < fraction_validation + fraction_test:
        return "test"
    return "train"


__all__ = [
    "SPLITS",
    "SOURCES",
    "FILE_FORMATS",
    "DEFAULT_BABI_DIR",
    "TextCorpusConfig",
    "unit_hash",
    "short_hash",
    "assign_split",
]

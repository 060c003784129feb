"""What the spoken dialogue data is made of (`DialogueConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..stage_config import config_from_dict
from ..tts_engines import parse_voice


@dataclass
class DialogueConfig:
    """Fields of `recipes/configs/<preset>/dialogue.yaml`.

    Each dialogue is one bAbI story (train split for `train`, the validation slice for `validation`; the test
    stories stay the `spoken_qa` stage's). The user tells the story and asks; each turn brings the sentences told
    since the last question and the next question, so a later answer needs the earlier turns. The assistant
    answers in a short full sentence ("Mary is in the kitchen."), as text and as speech tokens from the
    text-to-token model (the speech decoder's voice). `open_qa` adds one-turn open-vocabulary exchanges (civics,
    WebQuestions: `open_qa.py`) for the open-vocabulary presets.
    """

    tasks: list[int] = field(default_factory=lambda: [1, 6, 11])
    """bAbI tasks of the story dialogues; [] for none (an open-vocabulary preset with `open_qa` only)."""
    dialogues: dict[str, int] = field(default_factory=lambda: {"train": 600, "validation": 40})
    """bAbI dialogues per split (at most one per story)."""
    open_qa: dict[str, dict[str, int]] = field(default_factory=dict)
    """Open-vocabulary one-turn exchanges (`open_qa.py`): source (`uscis_civics`, `webquestions`) -> dialogues per
    split, e.g. `{webquestions: {train: 3000, validation: 100}}` (at most what the source has)."""
    open_qa_dir: str = "qa"
    """Where the open QA sources are: relative to the offline data root (`../shared/data`) or absolute."""
    open_qa_validation_fraction: float = 0.1
    """Civics has no splits: this share of its questions (seeded hash of the id) is validation."""
    max_turns: int = 3
    """Questions per dialogue: 1..max_turns, drawn uniformly (bAbI asks ~5 about a story)."""
    single_turn_fraction: float = 0.5
    """Share of dialogues with one turn holding the whole story up to a random question: the shape of the
    spoken QA evaluation."""
    text_user_fraction: float = 0.2
    """Share of dialogues whose user turns are text instead of speech (the chat's text box)."""
    voices: list[str] = field(default_factory=list)
    """User voices; default: `max_voices` of the speech corpus stage's train voices (never the held-out ones)."""
    max_voices: int = 8
    speech_tokenizer: str | None = None
    """Default: `run_dir/speech_tokenizer`."""
    text_to_token: str | None = None
    """Default: `run_dir/text_to_token`."""
    qa_path: str | None = None
    """Default: `run_dir/text_corpus/qa`."""
    keep_audio: bool = False
    """Keep the user turns' FLAC files (`audio/`); the speech tokens are what training reads."""
    seed: int = 0
    num_proc: int = 2
    shard_size: int = 200
    batch_size: int = 16

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> DialogueConfig:
        return config_from_dict(cls, config, "dialogue")

    def validate(self) -> None:
        from .open_qa import OPEN_QA_SOURCES

        if any(not 1 <= int(t) <= 20 for t in self.tasks):
            raise ValueError(f"dialogue config: tasks must be bAbI task numbers 1-20, got {self.tasks}")
        counts = {"bAbI": self.dialogues} | {f"open_qa.{k}": v for k, v in self.open_qa.items()}
        for what, split_counts in counts.items():
            if not isinstance(split_counts, Mapping) or set(split_counts) - {"train", "validation"} or any(
                int(v) < 0 for v in split_counts.values()
            ):
                raise ValueError(f"dialogue config: {what} dialogues must map train/validation to counts >= 0, got "
                                 f"{split_counts}")  # fmt: skip
        unknown = set(self.open_qa) - set(OPEN_QA_SOURCES)
        if unknown:
            raise ValueError(f"dialogue config: unknown open_qa source(s) {sorted(unknown)}; known: {OPEN_QA_SOURCES}")
        babi_train = int(self.dialogues.get("train", 0)) if self.tasks else 0
        if babi_train + sum(int(v.get("train", 0)) for v in self.open_qa.values()) < 1:
            raise ValueError(f"dialogue config: dialogues needs train >= 1 (bAbI with tasks, or open_qa), got "
                             f"{self.dialogues} with tasks {self.tasks} and open_qa {self.open_qa}")  # fmt: skip
        if not 0.0 <= float(self.open_qa_validation_fraction) < 1.0:
            raise ValueError("dialogue config: open_qa_validation_fraction must be in [0, 1)")
        for name in ("max_turns", "max_voices", "num_proc", "shard_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"dialogue config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("single_turn_fraction", "text_user_fraction"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"dialogue config: {name} must be in [0, 1], got {getattr(self, name)}")
        for spec in self.voices:
            parse_voice(spec)


__all__ = ["DialogueConfig"]

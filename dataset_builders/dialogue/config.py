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
    text-to-token model (the speech decoder's voice).
    """

    tasks: list[int] = field(default_factory=lambda: [1, 6, 11])
    dialogues: dict[str, int] = field(default_factory=lambda: {"train": 600, "validation": 40})
    """Dialogues per split (at most one per story)."""
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
        if not self.tasks or any(not 1 <= int(t) <= 20 for t in self.tasks):
            raise ValueError(f"dialogue config: tasks must be bAbI task numbers 1-20, got {self.tasks}")
        unknown = set(self.dialogues) - {"train", "validation"}
        if unknown or int(self.dialogues.get("train", 0)) < 1 or int(self.dialogues.get("validation", 0)) < 0:
            raise ValueError(f"dialogue config: dialogues needs train >= 1 (and optionally validation), got "
                             f"{self.dialogues}")  # fmt: skip
        for name in ("max_turns", "max_voices", "num_proc", "shard_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"dialogue config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("single_turn_fraction", "text_user_fraction"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"dialogue config: {name} must be in [0, 1], got {getattr(self, name)}")
        for spec in self.voices:
            parse_voice(spec)


__all__ = ["DialogueConfig"]

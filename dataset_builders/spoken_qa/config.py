"""What the spoken bAbI evaluation set is made of (`SpokenQAConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..stage_config import config_from_dict
from ..tts_engines import parse_voice

VOICE_SETS = ("seen_voices", "unseen_voices")


@dataclass
class SpokenQAConfig:
    """Fields of `recipes/configs/<preset>/spoken_qa.yaml`.

    The questions come from the text corpus's bAbI *test* split (never trained on). Each chosen story is told by
    one voice, drawn from `seen_voices` (voices the speech tokenizer was trained on) or `unseen_voices` (the held-out
    voices); its sentences, its question(s) and every answer of the task's answer set (the speech candidates of
    ->S ranking) are spoken in that voice, at the engine's default rate and pitch.
    """

    tasks: list[int] = field(default_factory=lambda: [1, 6, 11])
    questions_per_task: int = 50
    """Per voice set and task."""
    questions_per_story: int = 2
    """At most this many questions of one story (bAbI asks ~5 about each; more stories = more variety)."""
    seen_voices: list[str] = field(default_factory=list)
    """Default: `max_seen_voices` of the speech corpus stage's `train_voices`, drawn with the seed."""
    unseen_voices: list[str] = field(default_factory=list)
    """Default: the speech corpus stage's `test_voices` (held out from every training stage)."""
    max_seen_voices: int = 4
    qa_path: str | None = None
    """A `save_to_disk` DatasetDict with `task, story, question, answer` (default: `run_dir/text_corpus/qa`)."""
    babi_dir: str | None = None
    """Read the bAbI files here (relative to the data root) when there is no QA data: an open-text run (the
    `paper` preset) has none of its own, and bAbI's closed vocabulary is still a fair probe of it."""
    speech_tokenizer: str | None = None
    """Default: `run_dir/speech_tokenizer`."""
    seed: int = 0
    num_proc: int = 2
    shard_size: int = 200
    batch_size: int = 16

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> SpokenQAConfig:
        return config_from_dict(cls, config, "spoken_qa")

    def validate(self) -> None:
        if not self.tasks or any(not 1 <= int(t) <= 20 for t in self.tasks):
            raise ValueError(f"spoken_qa config: tasks must be bAbI task numbers 1-20, got {self.tasks}")
        for name in ("questions_per_task", "questions_per_story", "max_seen_voices", "num_proc", "shard_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"spoken_qa config: {name} must be >= 1, got {getattr(self, name)}")
        for spec in [*self.seen_voices, *self.unseen_voices]:
            parse_voice(spec)
        shared = sorted(set(self.seen_voices) & set(self.unseen_voices))
        if shared:
            raise ValueError(f"spoken_qa config: voices {shared} are both seen and unseen")


__all__ = ["VOICE_SETS", "SpokenQAConfig"]

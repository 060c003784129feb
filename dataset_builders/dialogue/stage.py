"""The pipeline's `dialogue` stage: spoken dialogues (bAbI, open QA) for the SFT stage (see build.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .build import build_dialogues
from .config import DialogueConfig


def default_voices(cfg: DialogueConfig, run_dir: Path) -> list[str]:
    """The config's voices, else `max_voices` of the speech corpus stage's train voices this machine has (the
    held-out voices stay held out: they are the evaluation's)."""
    from ..speech_corpus.config import SpeechCorpusConfig
    from ..speech_corpus.voices import usable_voices

    if cfg.voices:
        return list(cfg.voices)
    marker = run_dir / "speech_corpus" / "stage.json"
    if not marker.is_file():
        raise FileNotFoundError(f"dialogue: name voices, or run the speech_corpus stage first ({marker} is missing)")
    corpus = json.loads(marker.read_text())["config"]
    train, _ = usable_voices(SpeechCorpusConfig(train_voices=corpus.get("train_voices", []),
                                                test_voices=corpus.get("test_voices", [])))  # fmt: skip
    rng = np.random.default_rng([cfg.seed, 22])
    return [train[i] for i in sorted(rng.choice(len(train), min(cfg.max_voices, len(train)), replace=False))]


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry: `run_dir/text_corpus/qa`, `speech_tokenizer/`, `text_to_token/` -> `output_dir`."""
    from datasets import load_from_disk

    output_dir, run_dir = Path(output_dir), Path(run_dir)
    cfg = DialogueConfig.from_dict(config)
    qa = None
    if cfg.tasks and any(int(n) for n in cfg.dialogues.values()):
        qa_path = Path(cfg.qa_path) if cfg.qa_path else run_dir / "text_corpus" / "qa"
        if not qa_path.is_dir():
            raise FileNotFoundError(f"dialogue: no bAbI QA rows at {qa_path} (the tiny-world text corpus writes "
                                    "them; an open-vocabulary preset sets `tasks: []` and `open_qa`)")  # fmt: skip
        qa = load_from_disk(str(qa_path))
    stats = build_dialogues(qa, output_dir, cfg, default_voices(cfg, run_dir),
                            cfg.speech_tokenizer or run_dir / "speech_tokenizer",
                            cfg.text_to_token or run_dir / "text_to_token")  # fmt: skip
    keys = ("dialogues", "dialogues_by_source", "turns_mean", "user_utterances", "user_audio_seconds", "dialogues_dropped",
            "answer_sentences", "answer_runaways", "seconds")  # fmt: skip
    return {k: stats[k] for k in keys}


__all__ = ["default_voices", "run_stage"]

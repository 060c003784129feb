"""The pipeline's `spoken_qa` stage: bAbI test questions spoken in seen and held-out voices, tokenized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .build import build_spoken_qa
from .config import VOICE_SETS, SpokenQAConfig


def default_voices(cfg: SpokenQAConfig, run_dir: Path) -> dict[str, list[str]]:
    """Seen and unseen voices: the config's, else drawn from the speech corpus stage's train/test voices (only
    voices this machine has)."""
    from ..speech_corpus.config import SpeechCorpusConfig
    from ..speech_corpus.voices import usable_voices

    seen, unseen = list(cfg.seen_voices), list(cfg.unseen_voices)
    if not seen or not unseen:
        marker = run_dir / "speech_corpus" / "stage.json"
        if not marker.is_file():
            raise FileNotFoundError(f"spoken_qa: name seen_voices and unseen_voices, or run the speech_corpus stage "
                                    f"first ({marker} is missing)")  # fmt: skip
        corpus = json.loads(marker.read_text())["config"]
        train, test = usable_voices(SpeechCorpusConfig(train_voices=corpus.get("train_voices", []),
                                                       test_voices=corpus.get("test_voices", [])))  # fmt: skip
        if not seen:
            rng = np.random.default_rng([cfg.seed, 13])
            seen = [train[i] for i in sorted(rng.choice(len(train), min(cfg.max_seen_voices, len(train)), False))]
        unseen = unseen or test
    return dict(zip(VOICE_SETS, (seen, unseen)))


def babi_qa(cfg: SpokenQAConfig):
    """QA rows of the chosen tasks straight from the bAbI files, as the tiny-world text corpus writes them."""
    from datasets import Dataset, DatasetDict

    from ..text_corpus.config import TextCorpusConfig
    from ..text_corpus.sources import build_tiny_world

    parts = build_tiny_world(TextCorpusConfig(source="tiny_world", babi_dir=cfg.babi_dir, tasks=list(cfg.tasks),
                                              seed=cfg.seed))  # fmt: skip
    return DatasetDict({s: Dataset.from_list(rows) for s, rows in parts.qa.items() if rows})


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry: `run_dir/text_corpus/qa` + `run_dir/speech_tokenizer` -> `output_dir` (see build.py)."""
    from datasets import load_from_disk

    output_dir, run_dir = Path(output_dir), Path(run_dir)
    cfg = SpokenQAConfig.from_dict(config)
    qa_path = Path(cfg.qa_path) if cfg.qa_path else run_dir / "text_corpus" / "qa"
    if qa_path.is_dir():
        qa = load_from_disk(str(qa_path))
    elif cfg.babi_dir:
        qa = babi_qa(cfg)
    else:
        raise FileNotFoundError(f"spoken_qa: no bAbI QA data at {qa_path} (the tiny-world text corpus writes it; "
                                "or set babi_dir)")  # fmt: skip
    tokenizer = cfg.speech_tokenizer or run_dir / "speech_tokenizer"
    stats = build_spoken_qa(qa, tokenizer, output_dir, cfg, default_voices(cfg, run_dir))
    return {
        "questions": {s: sum(c.values()) for s, c in stats["questions"].items()},
        "utterances": stats["utterances"],
        "audio_minutes": round(stats["audio_seconds"] / 60, 1),
        "dropped": stats["dropped"],
        "seconds": stats["seconds"],
    }


__all__ = ["run_stage", "default_voices"]

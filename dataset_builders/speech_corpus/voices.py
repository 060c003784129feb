"""Who reads what: the voices this machine can synthesize, and the job list (sentence x voice x rate, pitch,
speed) drawn once from the seed, so every shard's bytes depend on nothing but the plan."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..tts_engines import missing_voices, parse_voice
from .config import OUTPUT_SPLITS, SOURCE_SPLIT, SpeechCorpusConfig

logger = logging.getLogger(__name__)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def usable_voices(config: SpeechCorpusConfig) -> tuple[list[str], list[str]]:
    """(train voices, held-out voices) this machine can synthesize; the others are skipped with a warning, or an
    error with `require_all_voices`. Duplicates are dropped, the order kept (it seeds the plan)."""
    out = []
    for name in ("train_voices", "test_voices"):
        voices = list(dict.fromkeys(getattr(config, name)))
        missing = missing_voices(voices, config.engine_options)
        if missing:
            if config.require_all_voices:
                raise ValueError(
                    f"speech_corpus: {name} not available on this machine: {missing} (bash scripts/setup.sh)"
                )
            logger.warning("speech_corpus: skipping %s not available on this machine: %s", name, missing)
        voices = [v for v in voices if v not in missing]
        if not voices:
            raise ValueError(
                f"speech_corpus: none of the {name} is available here; install the TTS engines (scripts/setup.sh)"
            )
        out.append(voices)
    return out[0], out[1]


def _voice_weights(voices: list[str], config: SpeechCorpusConfig) -> np.ndarray:
    w = np.array(
        [
            float(config.engine_weights.get(parse_voice(v).engine, 1.0)) * float(config.voice_weights.get(v, 1.0))
            for v in voices
        ]
    )
    return w / w.sum()


def plan_jobs(
    sentences: Mapping[str, list[tuple[str, str]]],
    train_voices: list[str],
    test_voices: list[str],
    config: SpeechCorpusConfig,
) -> dict[str, list[dict[str, Any]]]:
    """The whole job list, fixed by the seed: {output split: [{id, text, voice, rate, pitch, speed}, ...]}."""
    plan: dict[str, list[dict[str, Any]]] = {}
    for idx, split in enumerate(OUTPUT_SPLITS):
        voices = list(test_voices if split == "test_unseen_voices" else train_voices)
        weights = _voice_weights(voices, config)
        k = min(int(config.voices_per_sentence.get(split, 1)), len(voices))
        perturb = split == "train" or config.perturb_eval
        rng = np.random.default_rng([config.seed, 202, idx])
        jobs = []
        for sid, text in sentences.get(SOURCE_SPLIT[split], []):
            picks = rng.choice(len(voices), size=k, replace=False, p=weights)
            draws = rng.uniform(size=(k, 3))  # drawn even when unused, so perturb_eval does not shift the voices
            for j, v in enumerate(picks):
                voice = voices[int(v)]
                if perturb:
                    rate, pitch, speed = (
                        round(lo + (hi - lo) * float(u), 3)
                        for (lo, hi), u in zip((config.rate_range, config.pitch_range, config.speed_range), draws[j])
                    )
                else:
                    rate = pitch = speed = 1.0
                # ids read `<sentence id>-<voice>`, prefixed by the split unless the sentence id already says it
                prefix = "" if sid.startswith(f"{split}-") else f"{split}-"
                jobs.append(
                    {"id": f"{prefix}{_slug(sid)}-{_slug(voice)}", "text": text, "voice": voice,
                     "rate": rate, "pitch": pitch, "speed": speed}
                )  # fmt: skip
        plan[split] = jobs
    return plan


__all__ = ["usable_voices", "plan_jobs"]

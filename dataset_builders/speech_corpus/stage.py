"""The pipeline's `speech_corpus` stage: sentences of the text corpus (or a Hub corpus) -> `dataset/`, headline
metrics for `stage.json` (full detail in `stats.json`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .build import build_speech_corpus
from .config import SpeechCorpusConfig
from .hub import save_hub_corpus
from .selection import read_sentences


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry: sentences from `run_dir/text_corpus/sentences` (or `sentences_path`) -> `output_dir/dataset`."""
    output_dir, run_dir = Path(output_dir), Path(run_dir)
    cfg = SpeechCorpusConfig.from_dict(config)
    start = time.perf_counter()
    if cfg.hub_dataset:
        stats = save_hub_corpus(cfg.hub_dataset, output_dir)
    else:
        if cfg.sentences_path:
            from modeling_speechtext.paths import resolve_data_path

            source = resolve_data_path(cfg.sentences_path)
        else:
            source = run_dir / "text_corpus" / "sentences"
        build_speech_corpus(read_sentences(source, cfg.seed), cfg, output_dir)
        stats = json.loads((output_dir / "stats.json").read_text())
    splits = stats["splits"]
    metrics = {
        "seconds": round(time.perf_counter() - start, 1),
        "hours_total": round(sum(s["hours"] for s in splits.values()), 3),
        "engines": stats["engines"],
    }
    for split, s in splits.items():
        metrics[f"{split}_utterances"] = s["utterances"]
        metrics[f"{split}_hours"] = round(s["hours"], 3)
        metrics[f"{split}_voices"] = s["num_voices"]
    synth = stats.get("synthesis")
    if synth:
        metrics["x_realtime"] = synth["x_realtime_wall"]
        metrics["x_realtime_per_engine"] = {e: v["x_realtime"] for e, v in synth["per_engine"].items()}
    return metrics


__all__ = ["run_stage"]

"""The pipeline's `speech_corpus` stage: config -> a Hub corpus or a synthesized one -> `dataset/`, `stats.json`,
and the few numbers the pipeline records (hours, voices, x real time)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .build import build_speech_corpus
from .config import SpeechCorpusConfig
from .hub import load_hub_corpus
from .selection import read_sentences


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry: sentences from `run_dir/text_corpus/sentences` (or `sentences_path`) -> `output_dir/dataset`."""
    output_dir, run_dir = Path(output_dir), Path(run_dir)
    cfg = SpeechCorpusConfig.from_dict(config)
    start = time.perf_counter()
    if cfg.hub_dataset:
        dd = load_hub_corpus(cfg.hub_dataset, output_dir)
        dd.save_to_disk(str(output_dir / "dataset"))
        shutil.rmtree(output_dir / "cache", ignore_errors=True)
        stats = {
            "splits": {
                s: {
                    "utterances": len(d),
                    "hours": round(float(np.sum(d["duration"])) / 3600, 4),
                    "num_voices": len(set(d["voice"])),
                }
                for s, d in dd.items()
            },
            "engines": sorted({e for d in dd.values() for e in set(d["engine"])}),
            "hub_dataset": cfg.hub_dataset["name"],
        }
        (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    else:
        if cfg.sentences_path:
            from modeling_speechtext.paths import resolve_data_path

            source = resolve_data_path(cfg.sentences_path)
        else:
            source = run_dir / "text_corpus" / "sentences"
        dd = build_speech_corpus(read_sentences(source, cfg.seed), cfg, output_dir)
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

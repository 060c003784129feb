"""The numbers of a finished build (`stats.json`): hours, voices and engines per split, dropped utterances, and how
fast each engine synthesized, gathered from the statistics each shard carries (so a resumed build counts all)."""

from __future__ import annotations

import numpy as np

from .shards import engine_totals


def corpus_stats(dd, shard_stats, run_stats, wall, resumed, n_shards, train_voices, test_voices, config) -> dict:
    """`shard_stats`: of every shard (resumed ones too); `run_stats` and `wall`: of the shards this run made."""
    splits = {}
    for split, ds in dd.items():
        durations = np.asarray(ds["duration"], dtype=np.float64)
        voices, engines = ds["voice"], ds["engine"]
        splits[split] = {
            "utterances": len(ds),
            "hours": round(float(durations.sum()) / 3600, 4),
            "mean_seconds": round(float(durations.mean()), 3) if len(ds) else 0.0,
            "num_voices": len(set(voices)),
            "voices": sorted(set(voices)),
            "engines": {e: int(c) for e, c in zip(*np.unique(np.asarray(engines, dtype=object), return_counts=True))}
            if len(ds)
            else {},
        }
    per_engine = engine_totals()
    for s in shard_stats:
        for e, v in s.get("engines", {}).items():
            for k in per_engine[e]:
                per_engine[e][k] += v.get(k, 0)
    engine_speed = {
        e: {
            "utterances": int(v["utterances"]),
            "audio_hours": round(v["audio_seconds"] / 3600, 4),
            "x_realtime": round(v["audio_seconds"] / v["synth_seconds"], 1) if v["synth_seconds"] > 0 else None,
        }
        for e, v in sorted(per_engine.items())
    }
    run_audio = sum(s["audio_seconds"] for s in run_stats)
    return {
        "splits": splits,
        "hours_total": round(sum(s["hours"] for s in splits.values()), 4),
        "utterances_total": sum(s["utterances"] for s in splits.values()),
        "engines": sorted(per_engine),
        "train_voices": train_voices,
        "test_voices": test_voices,
        "dropped": [d for s in shard_stats for d in s.get("dropped", [])],
        "synthesis": {
            "num_proc": config.num_proc,
            "shards": n_shards,
            "shards_resumed": resumed,
            "wall_seconds": round(wall, 2),
            "audio_seconds": round(run_audio, 1),
            "x_realtime_wall": round(run_audio / wall, 1) if wall > 0 and run_audio else None,
            "per_engine": engine_speed,
        },
    }


__all__ = ["corpus_stats"]

"""Resuming a build: which shards are still to make, and when the shards on disk belong to another plan.

The plan (every job, the post-processing settings, the shard size, the engine options) is hashed into a
fingerprint. `shards/plan.json` records the fingerprint of the shards in that folder: a rerun with the same plan
keeps every finished shard (the writer renamed it into place whole) and makes the rest; a changed plan (seed,
voices, sizes, ...) throws the old shards away instead of mixing them in. A finished build (`dataset/` and a
`stats.json` with the same fingerprint) is loaded as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..parquet_shards import ShardedParquetWriter
from .config import PLAN_VERSION, SpeechCorpusConfig

logger = logging.getLogger(__name__)

SHARD_FOLDER = "shards"
"""Under the stage's output folder; deleted after the DatasetDict is saved unless `keep_shards`."""


def plan_fingerprint(plan: Mapping[str, list], config: SpeechCorpusConfig, post: Mapping[str, Any]) -> str:
    blob = json.dumps(
        {
            "version": PLAN_VERSION,
            "plan": plan,
            "post": post,
            "shard_size": config.shard_size,
            "engine_options": config.engine_options,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, obj: Any, **dumps_kwargs) -> None:
    """Write to a temporary name, then rename: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, **dumps_kwargs))
    os.replace(tmp, path)


def finished_corpus(output_dir: Path, fingerprint: str):
    """The saved DatasetDict when `output_dir` holds a complete build of this very plan, else None."""
    dataset_dir, stats_path = output_dir / "dataset", output_dir / "stats.json"
    if dataset_dir.is_dir() and stats_path.is_file():
        previous = json.loads(stats_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            logger.info("speech_corpus: %s is complete for this plan, loading it", dataset_dir)
            from datasets import load_from_disk

            return load_from_disk(str(dataset_dir))
    return None


def prepare_shards(
    plan: Mapping[str, list[dict[str, Any]]],
    config: SpeechCorpusConfig,
    post: Mapping[str, Any],
    output_dir: Path,
    fingerprint: str,
) -> tuple[dict[str, ShardedParquetWriter], list[dict[str, Any]]]:
    """One writer per split and one task per shard (all of them, finished or not, in split then shard order).

    Shards of another plan and the hidden half-written files of a crashed run are removed first, and
    `plan.json` is rewritten for this plan.
    """
    writers = {
        split: ShardedParquetWriter(output_dir, math.ceil(len(jobs) / config.shard_size), split, folder=SHARD_FOLDER)
        for split, jobs in plan.items()
    }
    shard_dir = output_dir / SHARD_FOLDER
    plan_path = shard_dir / "plan.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()).get("fingerprint") != fingerprint:
        logger.warning("speech_corpus: the plan changed since the last run; discarding old shards in %s", shard_dir)
        for p in shard_dir.glob("*.parquet"):
            p.unlink()
    for p in shard_dir.glob(".*.tmp"):  # half-written shards of a crashed run
        p.unlink()

    tasks = []
    for split, jobs in plan.items():
        writer = writers[split]
        for i in range(writer.num_shards):
            chunk = jobs[i * config.shard_size : (i + 1) * config.shard_size]
            tasks.append(
                {"writer": writer, "shard": i, "jobs": chunk, "post": post, "engine_options": config.engine_options}
            )
    shards = {split: [w.path(k).name for k in range(w.num_shards)] for split, w in writers.items()}
    write_json_atomic(plan_path, {"fingerprint": fingerprint, "shards": shards}, indent=1)
    return writers, tasks


__all__ = ["SHARD_FOLDER", "plan_fingerprint", "write_json_atomic", "finished_corpus", "prepare_shards"]

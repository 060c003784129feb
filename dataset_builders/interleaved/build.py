"""Shards, workers, ranks, resume: the build at scale.

Documents are cut into contiguous shards (shard k = documents `[k * documents_per_shard, ...)`); shard k belongs to
worker `k % n_workers`, a worker being one (accelerate rank, local `num_proc` process) pair. Shards are Parquet files
renamed into place when complete, so a killed build restarts where it stopped and rebuilds exactly the missing ones.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..parquet_shards import ShardedParquetWriter, ShardPlan
from .card import finalize, push_to_hub
from .config import InterleavedConfig
from .sources import DocumentReader, open_text_source
from .stats import BuildStats
from .synthesis import interleave_documents

logger = logging.getLogger(__name__)


def _schema():
    import pyarrow as pa

    segment = pa.struct([("modality", pa.string()), ("text", pa.string()), ("n_tokens", pa.int32())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("input_ids", pa.list_(pa.int32())),
            ("segments", pa.list_(segment)),
            ("n_text_tokens", pa.int32()),
            ("n_speech_tokens", pa.int32()),
        ]
    )


def _build_shards(cfg_dict: dict[str, Any], shards: list[int], threads: int | None = None) -> int:
    """Build the given shards (one worker). Runs in the main process or in a spawned `num_proc` worker."""
    import torch

    from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer

    if threads:
        torch.set_num_threads(threads)
    cfg = InterleavedConfig.from_dict(cfg_dict)
    ds, n = open_text_source(cfg)
    plan = ShardPlan(n, cfg.documents_per_shard)
    writer = ShardedParquetWriter(cfg.output_dir, plan.num_shards)
    device = cfg.device
    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    synth = TextToTokenSynthesizer.from_pretrained(cfg.t2t, device=device, **cfg.synthesis)
    schema = _schema()
    reader = DocumentReader(ds, cfg)  # a stream is read once, in order, across this worker's shards
    built = 0
    for shard in sorted(shards):
        if writer.done(shard):
            continue
        start = time.perf_counter()
        shard_stats = BuildStats()
        with writer.open(shard, schema) as f:
            docs = reader.documents(plan.item_range(shard))
            while chunk := [d for _, d in zip(range(cfg.chunk_documents), docs)]:
                rows, chunk_stats = interleave_documents(chunk, synth, cfg)
                f.write(rows)
                shard_stats.update(chunk_stats)
            shard_stats.counts["seconds_x1000"] += int(1000 * (time.perf_counter() - start))
            f.stats = shard_stats.to_json()
        built += 1
        logger.info("shard %d/%d: %d documents, %.1fs", shard + 1, plan.num_shards,
                    shard_stats.counts["documents"], time.perf_counter() - start)  # fmt: skip
    return built


def _distributed_state():
    """`(rank, world, state)`. Under a multi-process launcher (`accelerate launch --multi_gpu`, `torchrun`, `mpirun`)
    an accelerate `PartialState` gives rank and barrier (gloo on CPU-only machines); otherwise one process."""
    world = max(int(os.environ.get(k, "1")) for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
    if world > 1:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _check_output_dir(cfg: InterleavedConfig, num_documents: int, writer: ShardedParquetWriter, is_main: bool):
    """Refuse (or, with `overwrite`, clear) shards built with another config: resuming them would mix two builds."""
    marker = Path(cfg.output_dir) / "build_config.json"
    want = cfg.fingerprint(num_documents)
    have = json.loads(marker.read_text()) if marker.is_file() else None
    stale = (have is not None and have != want) or bool(writer.foreign_files())
    if stale and not cfg.overwrite:
        raise ValueError(
            f"{cfg.output_dir} holds an interleaved build with a different config or model; use a new output_dir "
            "or overwrite"
        )
    if is_main:
        if stale:
            logger.warning("%s: config changed, rebuilding every shard", cfg.output_dir)
            for p in writer.data_dir.glob("*.parquet"):
                p.unlink()
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(want, indent=2, sort_keys=True))
        os.replace(tmp, marker)


def build_interleaved(cfg: InterleavedConfig | dict[str, Any]) -> dict[str, Any] | None:
    """Build (or finish) the dataset; returns the statistics on the main process, None on the others."""
    if isinstance(cfg, dict):
        cfg = InterleavedConfig.from_dict(cfg)
    rank, world, state = _distributed_state()
    _, n = open_text_source(cfg)
    plan = ShardPlan(n, cfg.documents_per_shard)
    writer = ShardedParquetWriter(cfg.output_dir, plan.num_shards)
    if rank == 0:
        _check_output_dir(cfg, n, writer, True)
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        _check_output_dir(cfg, n, writer, False)
    start = time.perf_counter()
    n_workers = world * cfg.num_proc
    mine = {
        p: [k for k in plan.shards_for_worker(rank * cfg.num_proc + p, n_workers) if not writer.done(k)]
        for p in range(cfg.num_proc)
    }
    logger.info("rank %d/%d: %d of %d shards to build", rank, world, sum(map(len, mine.values())), plan.num_shards)
    if cfg.num_proc == 1:
        threads = cfg.num_threads or (max(1, (os.cpu_count() or 1) // world) if world > 1 else None)
        _build_shards(asdict(cfg), mine[0], threads)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = cfg.num_threads or max(1, (os.cpu_count() or 1) // n_workers)
        with ProcessPoolExecutor(cfg.num_proc, mp_context=multiprocessing.get_context("spawn")) as pool:
            for fut in [pool.submit(_build_shards, asdict(cfg), shards, threads) for shards in mine.values()]:
                fut.result()
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return None
    missing = writer.missing()
    if missing:
        raise RuntimeError(f"{cfg.output_dir}: shards {missing[:10]} are missing after the build")
    stats = finalize(cfg, writer, wall_seconds=time.perf_counter() - start)
    if cfg.push_to_hub:
        stats["hub_url"] = push_to_hub(cfg.output_dir, cfg.push_to_hub, private=cfg.private)
    return stats


__all__ = ["build_interleaved"]

"""Synthesis, one shard at a time: run the engines on a shard's jobs, post-process, and write the shard through the
one resumable writer (`dataset_builders.parquet_shards`), in this process or in a pool of spawned workers."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import numpy as np

from modeling_speechtext.constants import SAMPLE_RATE

from ..parquet_shards import ShardedParquetWriter
from ..tts_engines import SynthesisRequest, TTSError, get_engine, parse_voice
from .audio import encode_flac, postprocess
from .config import COLUMNS

logger = logging.getLogger(__name__)


def shard_schema():
    """The Arrow schema of a shard: the corpus columns with the audio still encoded (FLAC bytes)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("text", pa.string()),
            ("voice", pa.string()),
            ("engine", pa.string()),
            ("duration", pa.float32()),
        ]
    )


def engine_totals() -> defaultdict[str, dict[str, float]]:
    """Per engine: utterances kept, their audio seconds, and the seconds spent synthesizing (x real time)."""
    return defaultdict(lambda: {"utterances": 0, "audio_seconds": 0.0, "synth_seconds": 0.0})


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def synthesize_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Synthesize one shard's jobs and write them atomically as Parquet; returns the shard's stats.

    `task`: `writer` (the split's `ShardedParquetWriter`), `shard` (its index), `jobs`, `post` (the post-processing
    settings) and `engine_options`. Jobs are grouped by voice so festival serves a whole group from one process;
    rows keep the job order. A `TTSError` (one bad utterance) drops that utterance and is counted; any other
    exception fails the shard (and the build), leaving no file, so the rerun redoes exactly this shard.
    """
    start = time.perf_counter()
    writer: ShardedParquetWriter = task["writer"]
    jobs, post = task["jobs"], task["post"]
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        by_voice[job["voice"]].append(i)
    results: list[tuple[np.ndarray, int] | TTSError | None] = [None] * len(jobs)
    engines = engine_totals()
    for voice, idxs in by_voice.items():
        vs = parse_voice(voice)
        engine = get_engine(vs.engine, **task["engine_options"].get(vs.engine, {}))
        requests = [
            SynthesisRequest(
                jobs[i]["text"], vs.voice, jobs[i]["rate"], jobs[i]["pitch"] if engine.supports_pitch else None
            )
            for i in idxs
        ]
        t0 = time.perf_counter()
        out = engine.synthesize_batch(requests)
        engines[vs.engine]["synth_seconds"] += time.perf_counter() - t0
        for i, r in zip(idxs, out):
            results[i] = r

    rows: list[dict[str, Any]] = []
    dropped: list[dict[str, str]] = []
    for job, res in zip(jobs, results):
        if isinstance(res, TTSError) or res is None:
            dropped.append({"id": job["id"], "reason": str(res)})
            continue
        audio = postprocess(res[0], res[1], job["speed"], post, source=job["id"])
        duration = len(audio) / SAMPLE_RATE
        if not post["min_seconds"] <= duration <= post["max_seconds"]:
            dropped.append(
                {
                    "id": job["id"],
                    "reason": f"duration {duration:.2f} s outside [{post['min_seconds']}, {post['max_seconds']}]",
                }
            )
            continue
        engine_name = parse_voice(job["voice"]).engine
        rows.append(
            {
                "id": job["id"],
                "audio": {"bytes": encode_flac(audio), "path": None},
                "text": job["text"],
                "voice": job["voice"],
                "engine": engine_name,
                "duration": duration,
            }
        )
        engines[engine_name]["utterances"] += 1
        engines[engine_name]["audio_seconds"] += duration
    for d in dropped:
        logger.warning("speech_corpus: dropped %s: %s", d["id"], d["reason"])
    stats = {
        "shard": writer.path(task["shard"]).name,
        "utterances": len(rows),
        "audio_seconds": float(sum(r["duration"] for r in rows)),
        "wall_seconds": time.perf_counter() - start,
        "engines": {k: dict(v) for k, v in engines.items()},
        "dropped": dropped,
    }
    with writer.open(task["shard"], shard_schema()) as f:  # the shard exists whole or not at all
        f.write(rows)
        f.stats = stats
    return stats


def run_shards(tasks: list[dict[str, Any]], num_proc: int, done: int, total: int) -> tuple[list[dict], float]:
    """Synthesize `tasks` (the shards still missing; `done` of `total` are already there); (their stats, wall s)."""
    from tqdm.auto import tqdm

    results: list[dict] = []
    start = time.perf_counter()
    audio = 0.0
    bar = tqdm(total=total, initial=done, desc="speech_corpus shards", unit="shard")
    try:

        def _tick(stats):
            nonlocal audio
            results.append(stats)
            audio += stats["audio_seconds"]
            bar.update(1)
            bar.set_postfix(
                audio_h=f"{audio / 3600:.2f}", x_rt=f"{audio / max(time.perf_counter() - start, 1e-9):.0f}"
            )

        if num_proc <= 1 or len(tasks) <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small resampling convolutions: extra threads only contend (10x slower)
            try:
                for task in tasks:  # in-process: no pool start-up, and monkeypatching works (tests)
                    _tick(synthesize_shard(task))
            finally:
                torch.set_num_threads(threads)
        else:
            import multiprocessing

            # spawn, not fork: the parent may hold torch/OpenMP threads, which forked children inherit broken.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(num_proc, len(tasks)), initializer=_worker_init) as pool:
                for stats in pool.imap_unordered(synthesize_shard, tasks):
                    _tick(stats)
    finally:
        bar.close()
    return results, time.perf_counter() - start


def assemble_split(writer: ShardedParquetWriter, features):
    """All shards of one split, in order, as one `datasets.Dataset` with the corpus features (audio decodable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    tables = [pq.read_table(writer.path(k)).replace_schema_metadata(None) for k in range(writer.num_shards)]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return Dataset.from_dict({c: [] for c in COLUMNS}, features=features)
    table = pa.concat_tables(tables)
    return Dataset(table.cast(features.arrow_schema))


__all__ = ["engine_totals", "shard_schema", "synthesize_shard", "run_shards", "assemble_split"]

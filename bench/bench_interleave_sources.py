"""Does reading a streamed source cost the same for every shard? Time per shard against the shard index.

The interleaved builder once read shard k of a stream with `skip(k * per_shard).take(per_shard)`: every shard
re-streamed the whole prefix, so shard k cost k + 1 shards' worth of reading and a build was quadratic in its
number of shards. `DocumentReader` keeps one iterator per worker. Both are timed here on the same stream: a local
Parquet file opened with `load_dataset(..., streaming=True)`, standing in for a Hub dataset (the code path is the
same `IterableDataset`; a real Hub stream adds network time per row read, which only widens the gap). On local
files `datasets` skips whole Arrow batches cheaply, so the growth of `skip/take` is mild there; `--map` puts a
per-row step on the stream (as any decoding or filtering would), and skipping then costs what reading costs.

    .venv/bin/python bench/bench_interleave_sources.py                       # 20 shards of 5000 documents
    .venv/bin/python bench/bench_interleave_sources.py --shards 40 --per_shard 2000 --output report.json

Prints a JSON report (also written to --output): seconds per shard for both readers, and the ratio of the last
shard's time to the first's (about 1 when the reading is flat).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = "mary john sandra daniel went moved to the kitchen garden office bathroom hallway picked up milk".split()


def _write_source(path: Path, n: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30))) + "." for _ in range(n)]
    ids = [f"doc-{i:08d}" for i in range(n)]
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=1000)
    else:
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))


def _time_shards(read_shard, plan) -> list[float]:
    """Seconds to read every document of each shard, in order (what one worker does before synthesis)."""
    seconds = []
    for shard in range(plan.num_shards):
        start = time.perf_counter()
        n = sum(1 for _ in read_shard(plan.item_range(shard)))
        seconds.append(round(time.perf_counter() - start, 4))
        assert n == len(plan.item_range(shard))
    return seconds


def main(argv: list[str] | None = None) -> dict:
    from datasets import load_dataset

    from dataset_builders.interleaved import InterleavedConfig
    from dataset_builders.interleaved.sources import DocumentReader
    from dataset_builders.parquet_shards import ShardPlan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--per_shard", type=int, default=5000)
    parser.add_argument(
        "--format", choices=["parquet", "jsonl"], default="parquet", help="the stream's files (Hub datasets use both)"
    )
    parser.add_argument(
        "--map",
        action="store_true",
        help="a per-row step on the stream (identity `.map`): skipping then pays per row, like a Hub stream's download",
    )
    parser.add_argument("--output", help="also write the JSON report here")
    args = parser.parse_args(argv)
    n = args.shards * args.per_shard
    plan = ShardPlan(n, args.per_shard)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"docs.{args.format}"
        builder = "parquet" if args.format == "parquet" else "json"
        _write_source(source, n)
        cfg = InterleavedConfig(source=str(source), t2t="unused", output_dir=tmp, streaming=True, max_documents=n)

        def stream():
            ds = load_dataset(builder, data_files=[str(source)], split="train", streaming=True)
            return ds.map(lambda row: row) if args.map else ds

        def skip_take(items):  # the old reader: a fresh skip/take over the stream for every shard
            return stream().skip(items.start).take(len(items))

        one_pass = _time_shards(DocumentReader(stream(), cfg).documents, plan)
        restreamed = _time_shards(skip_take, plan)
    report = {
        "format": args.format,
        "per_row_map": args.map,
        "documents": n,
        "shards": plan.num_shards,
        "documents_per_shard": args.per_shard,
        "one_pass_seconds_per_shard": one_pass,
        "skip_take_seconds_per_shard": restreamed,
        "one_pass_total_seconds": round(sum(one_pass), 3),
        "skip_take_total_seconds": round(sum(restreamed), 3),
        # the first shard pays for opening the stream: compare the second with the last
        "one_pass_last_over_second": round(one_pass[-1] / one_pass[1], 2) if len(one_pass) > 1 else 1.0,
        "skip_take_last_over_second": round(restreamed[-1] / restreamed[1], 2) if len(restreamed) > 1 else 1.0,
    }
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()

__all__ = ["main"]

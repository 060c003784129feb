"""Resumable, parallel Parquet shards: the storage half of any builder that generates data at scale.

The unit of work and of completion is one shard file `data/<split>-XXXXX-of-YYYYY.parquet`. A shard is written to a
hidden temporary file and renamed atomically when complete, so after a crash (or `kill -9`) every visible shard is
whole, and a restart rebuilds exactly the missing ones: no duplicates, no gaps. Per-shard statistics travel inside
the file (Parquet key-value metadata), so the stats of a resumed build are those of its shards, whichever process or
run wrote them. Shard k belongs to worker `k % n_workers`; a worker is one (accelerate rank, local process) pair.

Both generating builders use it: the interleaved builder (rows appended as they come) and the speech corpus
(`folder="shards"`, one shard's rows written at once after synthesis).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATS_KEY = b"speechtext_stats"


def shard_name(index: int, num_shards: int, split: str = "train") -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.parquet"


@dataclass(frozen=True)
class ShardPlan:
    """`num_items` rows in `num_shards` contiguous shards of at most `items_per_shard`."""

    num_items: int
    items_per_shard: int

    def __post_init__(self):
        if self.num_items < 0 or self.items_per_shard < 1:
            raise ValueError(f"bad shard plan: {self.num_items} items, {self.items_per_shard} per shard")

    @property
    def num_shards(self) -> int:
        return max(1, -(-self.num_items // self.items_per_shard))

    def item_range(self, shard: int) -> range:
        start = shard * self.items_per_shard
        return range(min(start, self.num_items), min(start + self.items_per_shard, self.num_items))

    def shards_for_worker(self, worker: int, n_workers: int) -> list[int]:
        if not 0 <= worker < n_workers:
            raise ValueError(f"worker {worker} outside 0..{n_workers - 1}")
        return list(range(worker, self.num_shards, n_workers))


class ShardedParquetWriter:
    """Writes the shards of one split under `root/<folder>/`; `done(k)` says whether shard k is complete.

    Several splits may share a folder (their file names differ by split); `folder` exists because the speech
    corpus has always kept its shards in `shards/` and a rerun must find the shards an earlier run left there.
    """

    def __init__(self, root: str | os.PathLike, num_shards: int, split: str = "train", *, folder: str = "data"):
        self.data_dir = Path(root) / folder
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.num_shards = num_shards
        self.split = split

    def path(self, shard: int) -> Path:
        return self.data_dir / shard_name(shard, self.num_shards, self.split)

    def done(self, shard: int) -> bool:
        return self.path(shard).is_file()

    def missing(self) -> list[int]:
        return [k for k in range(self.num_shards) if not self.done(k)]

    def foreign_files(self) -> list[Path]:
        """Shard files of another layout (a different shard count): mixing them in would duplicate rows."""
        mine = {shard_name(k, self.num_shards, self.split) for k in range(self.num_shards)}
        return sorted(p for p in self.data_dir.glob(f"{self.split}-*.parquet") if p.name not in mine)

    def open(self, shard: int, schema) -> _ShardFile:
        return _ShardFile(self.path(shard), schema)

    def read_stats(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        out = []
        for k in range(self.num_shards):
            if self.done(k):
                meta = pq.read_metadata(self.path(k)).metadata or {}
                out.append(json.loads(meta.get(STATS_KEY, b"{}")))
        return out


class _ShardFile:
    """Context manager: row groups appended as they come (flat memory); renamed into place only on success."""

    def __init__(self, final: Path, schema):
        self.final = final
        self.tmp = final.with_name("." + final.name + ".tmp")
        self.schema = schema
        self.stats: dict[str, Any] = {}
        self._writer = None

    def __enter__(self) -> _ShardFile:
        import pyarrow.parquet as pq

        self.tmp.unlink(missing_ok=True)  # a previous crash's leftover: this worker owns the shard
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        return self

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        if rows:
            self._writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._writer.close()
            self.tmp.unlink(missing_ok=True)
            return
        self._writer.add_key_value_metadata({STATS_KEY: json.dumps(self.stats).encode()})
        self._writer.close()
        os.replace(self.tmp, self.final)


__all__ = ["STATS_KEY", "ShardPlan", "ShardedParquetWriter", "shard_name"]

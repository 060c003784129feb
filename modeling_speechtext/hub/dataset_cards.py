"""The `dataset_info` block of a Parquet dataset's card: rows and bytes per split, as `push_to_hub` writes it.

Why every card of ours carries it, also for local folders: `datasets` 5.2 keys its cache for a local folder whose
card has `configs:` by the card alone (name, config, patterns), not by the files, so `load_dataset("runs/demo/
dialogue")` after `load_dataset("runs/micro/dialogue")` silently returned the micro rows (measured). The split
sizes are part of that key, and `load_dataset` checks them against the files it reads, so a stale cache entry
or a card that disagrees with the data is caught instead of returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def parquet_dataset_info(folder: str | Path, splits: Iterable[str]) -> dict:
    """`{"splits": [{name, num_bytes, num_examples}], "download_size", "dataset_size"}` from `data/<split>-*.parquet`
    (from the Parquet footers only: num_bytes is the uncompressed size of the row groups, download_size the files').
    Whatever adds or rewrites shards later must rewrite the card: `load_dataset` checks num_examples."""
    import pyarrow.parquet as pq

    out, download, total = [], 0, 0
    for split in splits:
        files = sorted((Path(folder) / "data").glob(f"{split}-*.parquet"))
        if not files:
            raise FileNotFoundError(f"{folder}/data holds no {split}-*.parquet: write the data before the card")
        footers = [pq.read_metadata(f) for f in files]
        rows = sum(m.num_rows for m in footers)
        nbytes = sum(m.row_group(i).total_byte_size for m in footers for i in range(m.num_row_groups))
        download += sum(f.stat().st_size for f in files)
        total += nbytes
        out.append({"name": split, "num_bytes": nbytes, "num_examples": rows})
    return {"splits": out, "download_size": download, "dataset_size": total}


__all__ = ["parquet_dataset_info"]

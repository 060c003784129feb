"""Source I/O: text documents from a local folder/file (map-style) or a Hub dataset (streamed).

A streamed source is read in one pass per worker (`DocumentReader`): re-reading a stream's prefix for every shard
made a build quadratic in its number of shards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import islice

from .config import _LOCAL_BUILDERS, InterleavedConfig, _local_path


def open_text_source(cfg: InterleavedConfig):
    """`(dataset, num_documents)` for the configured source; the dataset is map-style or streaming."""
    import datasets

    path = _local_path(cfg.source)
    if path is None:
        ds = datasets.load_dataset(
            cfg.source, cfg.hub_config, split=cfg.split, streaming=True if cfg.streaming is None else cfg.streaming
        )
    elif path.is_dir() and (path / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(path))
        if cfg.split not in dd:
            raise ValueError(f"{path}: no split {cfg.split!r}; splits are {list(dd)}")
        ds = dd[cfg.split]
    elif path.is_dir() and (path / "state.json").is_file():
        ds = datasets.load_from_disk(str(path))
    else:
        files = sorted(p for p in path.rglob("*") if p.suffix in _LOCAL_BUILDERS) if path.is_dir() else [path]
        kinds = {_LOCAL_BUILDERS.get(p.suffix) for p in files}
        if not files or None in kinds or len(kinds) != 1:
            raise ValueError(
                f"{path}: expected a save_to_disk folder or files of one kind among {sorted(_LOCAL_BUILDERS)}"
            )
        builder = kinds.pop()
        kwargs = {"sample_by": cfg.sample_by} if builder == "text" else {}
        ds = datasets.load_dataset(
            builder, data_files=[str(p) for p in files], split="train", streaming=bool(cfg.streaming), **kwargs
        )
    columns = ds.column_names
    if columns is not None and cfg.text_column not in columns:
        raise ValueError(f"{cfg.source}: no text column {cfg.text_column!r}; columns are {columns}")
    if cfg.sources is not None:
        if columns is not None and cfg.source_column not in columns:
            raise ValueError(
                f"{cfg.source}: `sources` given but no column {cfg.source_column!r}; columns are {columns}"
            )
        if not isinstance(ds, datasets.Dataset) and cfg.max_documents is None:
            # a stream's length is known only before the filter: the shard plan needs a bound
            raise ValueError(f"{cfg.source}: `sources` on a stream needs max_documents (an upper bound)")
        wanted = set(cfg.sources)
        # in memory: a cache file written next to a local source's Arrow files would change its content digest
        in_memory = {"keep_in_memory": True} if isinstance(ds, datasets.Dataset) else {}
        ds_unfiltered = ds
        ds = ds.filter(lambda source: source in wanted, input_columns=cfg.source_column, **in_memory)
        if isinstance(ds, datasets.Dataset) and len(ds) == 0:
            present = sorted(ds_unfiltered.unique(cfg.source_column))[:10]
            raise ValueError(
                f"{cfg.source}: no document of sources {sorted(wanted)} in column {cfg.source_column!r} "
                f"(it holds e.g. {present})"
            )
    if cfg.shuffle:
        if not isinstance(ds, datasets.Dataset):
            # a stream's shuffle buffer would make a shard's rows depend on how far the buffer had been filled
            raise ValueError(f"{cfg.source}: `shuffle` needs a map-style source (set streaming: false)")
        # flatten: the shards read row ranges by `select`, cheap on contiguous rows
        ds = ds.shuffle(seed=cfg.seed, keep_in_memory=True)
        if cfg.max_documents is not None:  # flatten only the rows used
            ds = ds.select(range(min(cfg.max_documents, len(ds))))
        ds = ds.flatten_indices(keep_in_memory=True)
    if isinstance(ds, datasets.Dataset):
        n = len(ds)
    else:
        info = ds.info.splits.get(cfg.split) if ds.info and ds.info.splits else None
        n = info.num_examples if info and info.num_examples else None
    if cfg.max_documents is not None:
        n = cfg.max_documents if n is None else min(n, cfg.max_documents)
    if n is None:
        raise ValueError(f"{cfg.source}: a stream of unknown length; set max_documents")
    return ds, n


def _document(index: int, row: dict, cfg: InterleavedConfig) -> tuple[str, str | None]:
    """`(doc_id, text)` of one source row: the id column, else the row index; a non-string text is None."""
    doc_id = row.get(cfg.id_column)
    text = row.get(cfg.text_column)
    return (str(doc_id) if doc_id is not None else f"{index:09d}"), (text if isinstance(text, str) else None)


class DocumentReader:
    """The documents of one worker's shards, read shard after shard (ascending row ranges).

    A map-style dataset is read by random access (`select`), one range at a time. A stream is read in one pass:
    the reader keeps its iterator and its position, so the rows between two of the worker's shards (the other
    workers' shards, or shards already built by an earlier run) are read past once, never re-read from the start.
    `skip(start).take(n)` per shard re-streamed the whole prefix each time: quadratic in the number of shards.

    Why not `IterableDataset.shard` / `datasets.distributed.split_dataset_by_node`: they hand out whole source
    files (or every k-th row), so shard k would no longer hold the documents `[k * per_shard, (k + 1) * per_shard)`
    and the rows would depend on the worker layout and on the source's file count (row-index ids would change,
    resume could not tell which documents a missing shard holds). One pass keeps every shard's content fixed; its
    price is that each of W workers reads the whole stream (W x N rows in all, not N^2 / (2 x per_shard)), which is
    cheap next to synthesizing speech for its own N / W documents.
    """

    def __init__(self, ds, cfg: InterleavedConfig):
        import datasets

        self.ds, self.cfg = ds, cfg
        self.streaming = not isinstance(ds, datasets.Dataset)
        self._rows: Iterator[dict] | None = None  # the stream, opened at the first range
        self._position = 0  # source index of the row `_rows` yields next

    def documents(self, items: range) -> Iterator[tuple[str, str | None]]:
        """`(doc_id, text)` for the rows `items` (a contiguous range), in order."""
        if len(items) == 0:
            return
        if not self.streaming:
            cols = [c for c in (self.cfg.text_column, self.cfg.id_column) if c in self.ds.column_names]
            for index, row in zip(items, self.ds.select_columns(cols).select(items)):
                yield _document(index, row, self.cfg)
            return
        if self._rows is None or items.start < self._position:  # first range, or (not in a build) a step back
            self._rows, self._position = iter(self.ds), 0
        deque(islice(self._rows, items.start - self._position), maxlen=0)  # read past the rows in between
        self._position = items.start
        for index in items:
            row = next(self._rows, None)
            if row is None:  # the stream is shorter than planned
                return
            self._position = index + 1  # kept per row: a consumer may stop early and still resume here
            yield _document(index, row, self.cfg)


def iter_documents(ds, items: range, cfg: InterleavedConfig) -> Iterator[tuple[str, str | None]]:
    """`(doc_id, text)` for the rows `items` of the source (a contiguous range); see `DocumentReader` for many."""
    yield from DocumentReader(ds, cfg).documents(items)


__all__ = ["DocumentReader", "open_text_source", "iter_documents"]

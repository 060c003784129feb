"""The build's configuration and its fingerprint: what the shards' content depends on.

The fingerprint hashes content (the model's weights and tokenizer, the local source's data files), never file
dates, so an identical re-save keeps the shards and an edited source of the same name rebuilds them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .planning import GRANULARITIES, SpanLengthDistribution


@dataclass
class InterleavedConfig:
    """Everything a build depends on. The same keys are the stage YAML (`recipes/configs/<preset>/interleaved.yaml`).

    Args:
        source: text documents: a `save_to_disk` folder (Dataset or DatasetDict), text/jsonl/json/parquet/csv files
            or a folder of them, or a Hub dataset id (streamed). Relative paths may be under the offline data root.
        t2t: the text-to-token model folder (`TextToTokenSynthesizer.from_pretrained`).
        output_dir: where `data/train-XXXXX-of-YYYYY.parquet`, `README.md`, `stats.json` and plots go.
        split, hub_config, text_column, id_column: which records and columns (no id column -> the row index).
        sample_by: for .txt sources, one document per `line`, `paragraph` (blank-line separated) or `document`.
        streaming: stream the source (default: True for Hub datasets, False for local ones).
        sources, source_column: keep only the documents whose `source_column` is one of `sources` (e.g. the bAbI
            tasks a run evaluates: `[babi/qa1, babi/qa6, babi/qa11]`); None keeps every document.
        shuffle: a map-style source's documents in a seeded random order (`seed`) before `max_documents` is taken,
            so the first N are a sample of the whole source rather than its first files or tasks.
        max_documents: use only the first N documents (required for streams of unknown length).
        documents_per_shard: shard size; a shard is the unit of resumption and of parallelism.
        chunk_documents: documents whose spans are synthesized together (bigger = better-filled batches).
        eta: requested fraction of words turned into speech.
        granularity: spans of `word`s or of `sentence`s.
        span_length: `SpanLengthDistribution` fields (units per span).
        max_document_chars: longer documents are cut at a word boundary (counted).
        max_span_chars: longer spans stay text (counted).
        min_piece_words: a span is synthesized sentence by sentence; shorter sentences join a neighbour.
        synthesis: `SynthesisConfig` overrides (temperature, top_k, top_p, batch_size, max_tokens_per_char, ...).
        add_eos: end each example with the tokenizer's eos.
        num_proc: local worker processes (each loads the model); ranks of `accelerate launch` multiply it.
        overwrite: when `output_dir` holds a build with another config: `False` -> error, `True` -> rebuild.
        push_to_hub: a dataset repo id to upload to after the build (`private` for a private repo).
        device: where the text-to-token model runs; `auto` = this rank's GPU if there is one, else CPU.
        num_threads: torch threads per worker (default: the cores divided among the workers).
    """

    source: str
    t2t: str
    output_dir: str
    split: str = "train"
    hub_config: str | None = None
    text_column: str = "text"
    id_column: str = "id"
    sample_by: str = "line"
    streaming: bool | None = None
    sources: list[str] | None = None
    source_column: str = "source"
    shuffle: bool = False
    max_documents: int | None = None
    documents_per_shard: int = 1000
    chunk_documents: int = 256
    eta: float = 0.3
    granularity: str = "word"
    span_length: dict[str, Any] = field(default_factory=dict)
    max_document_chars: int = 20_000
    max_span_chars: int = 300
    min_piece_words: int = 4
    synthesis: dict[str, Any] = field(default_factory=dict)
    add_eos: bool = True
    num_proc: int = 1
    seed: int = 0
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False
    device: str = "auto"
    num_threads: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.documents_per_shard < 1 or self.chunk_documents < 1 or self.num_proc < 1:
            raise ValueError("documents_per_shard, chunk_documents and num_proc must be >= 1")
        SpanLengthDistribution(**self.span_length)  # validate early, not in a worker
        if self.sources is not None and (isinstance(self.sources, str) or not self.sources):
            raise ValueError(f"sources must be a non-empty list of source names or null, got {self.sources!r}")

    @property
    def lengths(self) -> SpanLengthDistribution:
        return SpanLengthDistribution(**self.span_length)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InterleavedConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown interleaved config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def fingerprint(self, num_documents: int) -> dict[str, Any]:
        """What the shards' content depends on (not: workers, output place, upload), plus the model's identity."""
        keep = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"output_dir", "num_proc", "overwrite", "device", "num_threads", "push_to_hub", "private"}
        }
        # content, not file dates: an identical re-save keeps the shards, a changed model or source rebuilds them
        keep["t2t_content"] = content_digest(Path(self.t2t), T2T_CONTENT_FILES)
        source = _local_path(self.source)
        if source is not None:
            keep["source_content"] = content_digest(source, SOURCE_CONTENT_FILES)
        # a Hub source is identified by its name/config/split only: its revision cannot be checked offline
        keep["num_documents"] = num_documents
        return json.loads(json.dumps(keep, default=str))


# What a build's output depends on, by file pattern: the synthesizer's model, tokenizer and decoding settings,
# and the source's data files (a `save_to_disk` folder's Arrow files or plain data files).
T2T_CONTENT_FILES = (
    "*.safetensors",
    "config.json",
    "generation_config.json",
    "synthesis_config.json",
    "tokenizer*.json",
)
SOURCE_CONTENT_FILES = ("*.arrow", "*.txt", "*.jsonl", "*.json", "*.parquet", "*.csv")


def content_digest(path: Path, patterns: tuple[str, ...]) -> str:
    """sha256 over the relative names and bytes of the files under `path` matching `patterns` (or `path` itself).

    Hashing costs about a second per GB, once per build; dates and sizes alone would call an identical re-save
    a new model and would miss an edited source of the same size.
    """
    import hashlib

    if path.is_file():
        files, root = [path], path.parent
    else:
        files, root = sorted({f for pattern in patterns for f in path.rglob(pattern) if f.is_file()}), path
    digest = hashlib.sha256()
    for f in files:
        if f.name in ("state.json", "dataset_info.json", "metrics.json", "stage.json"):
            continue  # bookkeeping (fingerprints, dates, numbers), not content
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


# --- where a source string points --------------------------------------------------------------------------

_LOCAL_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _local_path(source: str) -> Path | None:
    from modeling_speechtext.paths import resolve_data_path

    try:
        path = resolve_data_path(source)
        if not path.exists():
            raise FileNotFoundError(f"{source}: no such file or folder")
        return path
    except FileNotFoundError:
        if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source) and Path(source).suffix not in _LOCAL_BUILDERS:
            return None  # looks like a Hub id
        raise


__all__ = ["InterleavedConfig", "T2T_CONTENT_FILES", "SOURCE_CONTENT_FILES", "content_digest"]

"""Synthetic interleaved speech-text data: the paper's core idea (PAPER.md §4), built at speed and resumably.

Text documents -> spans sampled at word or sentence granularity covering a fraction `eta` of the words ->
each span replaced by the speech tokens a text-to-token model writes for it, wrapped in `<|begin_of_audio|>` /
`<|end_of_audio|>` -> one example per document::

    {"id": ..., "input_ids": int32[...],
     "segments": [{"modality": "text"|"speech", "text": ..., "n_tokens": ...}, ...],   # tiles input_ids
     "n_text_tokens": ..., "n_speech_tokens": ...}

The first half of this file is pure functions (units, span sampling, speakability, document plans, assembly),
unit-tested without any model. The second half runs them at scale: documents are read from a local folder/file or
streamed from a Hub dataset, cut into contiguous shards, and each shard's spans are synthesized together (length-
sorted batches: where the speed comes from). Shards are Parquet files renamed into place when complete, so a killed
build restarts where it stopped; shards are spread over `accelerate launch` ranks x `num_proc` processes. Every
random choice is seeded per document (`stable_seed(seed, doc id)`), so the output does not depend on the layout
of workers, on restarts, or on which documents share a batch.

CLI: `speechtext interleave --t2t DIR --text SOURCE --output_dir DIR --eta 0.3`, or on several processes
`accelerate launch --multi_gpu --num_processes 2 -m dataset_builders.interleaved --t2t ...` (torchrun underneath;
on a CPU-only machine the ranks talk over gloo; accelerate's own MULTI_CPU mode needs mpirun).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modeling_speechtext.sentences import sentence_spans

from .parquet_shards import ShardedParquetWriter, ShardPlan

logger = logging.getLogger(__name__)

TEXT, SPEECH = "text", "speech"
GRANULARITIES = ("word", "sentence")
DISTRIBUTIONS = ("poisson", "geometric", "uniform", "fixed")

# ----------------------------------------------------------------------------------------------------------------
# Pure functions: no model, no I/O.
# ----------------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\S+")
_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def split_units(text: str, granularity: str = "word") -> list[tuple[int, int]]:
    """Character ranges `(start, end)` of the words or sentences of `text`, in order, never overlapping."""
    if granularity == "word":
        return [m.span() for m in _WORD_RE.finditer(text)]
    if granularity == "sentence":
        # a bAbI answer after its question ("Where is Mary? bathroom.") is a sentence of its own here
        return sentence_spans(text, strict=False)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


@dataclass(frozen=True)
class SpanLengthDistribution:
    """How many units (words or sentences) one speech span has: `distribution` clipped to [`min`, `max`].

    `poisson`/`geometric` take `mean`; `uniform` draws from [`min`, `max`]; `fixed` always gives `round(mean)`.
    """

    distribution: str = "poisson"
    mean: float = 10.0
    min: int = 1
    max: int = 40

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"span_length.distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if not 1 <= self.min <= self.max or self.mean <= 0:
            raise ValueError(f"span_length needs 1 <= min <= max and mean > 0, got {self}")

    def sample(self, rng) -> int:
        if self.distribution == "poisson":
            n = int(rng.poisson(self.mean))
        elif self.distribution == "geometric":
            n = int(rng.geometric(1.0 / max(self.mean, 1.0)))
        elif self.distribution == "uniform":
            n = int(rng.integers(self.min, self.max + 1))
        else:
            n = round(self.mean)
        return min(max(n, self.min), self.max)


def sample_spans(n_units: int, eta: float, rng, lengths: SpanLengthDistribution) -> list[tuple[int, int]]:
    """Non-overlapping, non-adjacent unit ranges `[a, b)` covering about `eta * n_units` units.

    The count is stochastically rounded (`floor(eta * n + U)`), so short documents still average `eta`. Span lengths
    are drawn from `lengths` until they reach the count (the last one trimmed); the text units left are spread over
    the gaps uniformly at random, with at least one text unit between two spans (adjacent spans would be one span).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if n_units <= 0 or eta == 0.0:
        return []
    n_speech = min(n_units, int(math.floor(eta * n_units + rng.random())))
    if n_speech == 0:
        return []
    sizes: list[int] = []
    while sum(sizes) < n_speech:
        sizes.append(min(lengths.sample(rng), n_speech - sum(sizes)))
    n_text = n_units - n_speech
    while len(sizes) - 1 > n_text:  # not enough text to separate them: merge neighbours
        j = int(rng.integers(len(sizes) - 1))
        sizes[j : j + 2] = [sizes[j] + sizes[j + 1]]
    k = len(sizes)
    gaps = [int(g) for g in rng.multinomial(n_text - (k - 1), [1.0 / (k + 1)] * (k + 1))]
    for i in range(1, k):
        gaps[i] += 1
    spans, pos = [], 0
    for i, size in enumerate(sizes):
        pos += gaps[i]
        spans.append((pos, pos + size))
        pos += size
    return spans


def speakable_text(text: str) -> str | None:
    """What a text-to-token model is given for a span: accents folded to ASCII, typographic quotes/dashes made
    plain, whitespace collapsed. None when the span cannot be spoken: no ASCII letter, or letters of a script that
    does not fold to ASCII (the model never heard them)."""
    out = []
    for ch in unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY)):
        if ord(ch) < 128:
            out.append(ch)
        elif unicodedata.category(ch) == "Mn":  # combining accent of a folded letter
            continue
        elif unicodedata.category(ch).startswith("L"):
            return None
        else:
            out.append(" ")
    folded = " ".join("".join(out).split())
    return folded if re.search(r"[A-Za-z]", folded) else None


@dataclass(frozen=True)
class Segment:
    """A piece of a document. `text` is the raw slice (leading whitespace included, so the raw texts of a
    document's segments concatenate back to it); `speech_text` is what the text-to-token model reads."""

    modality: str
    text: str
    speech_text: str | None = None

    @property
    def n_words(self) -> int:
        return len(self.text.split())


@dataclass
class DocumentPlan:
    segments: list[Segment]
    skip_reason: str | None = None  # "empty" | "no_speakable_text"
    truncated: bool = False
    counts: Counter = field(default_factory=Counter)


def plan_document(
    text: str | None,
    rng,
    *,
    eta: float = 0.3,
    granularity: str = "word",
    lengths: SpanLengthDistribution | None = None,
    max_document_chars: int = 20_000,
    max_span_chars: int = 300,
) -> DocumentPlan:
    """Decide which parts of a document become speech. Pure given `rng`.

    Bad input is counted, never fatal: an empty document or one without a single speakable word is skipped
    (`skip_reason`); a huge document is cut at a unit boundary (`truncated`); a span with unspeakable characters
    or longer than `max_span_chars` stays text (`counts["spans_unspeakable"]`, `counts["spans_too_long"]`).
    """
    lengths = lengths or SpanLengthDistribution()
    text = (text or "").strip()
    if not text:
        return DocumentPlan([], skip_reason="empty")
    truncated = False
    if len(text) > max_document_chars:
        cut = text.rfind(" ", 0, max_document_chars + 1)
        text, truncated = text[: cut if cut > 0 else max_document_chars].rstrip(), True
    if not any(speakable_text(text[a:b]) for a, b in split_units(text, "word")):
        return DocumentPlan([], skip_reason="no_speakable_text", truncated=truncated)
    units = split_units(text, granularity)
    counts: Counter = Counter()
    segments: list[Segment] = []
    prev_end = 0  # boundaries sit at the end of the previous unit: whitespace goes with the following segment
    for a, b in sample_spans(len(units), eta, rng, lengths):
        span_start, span_end = (units[a - 1][1] if a > 0 else 0), units[b - 1][1]
        raw = text[span_start:span_end]
        counts["spans_sampled"] += 1
        spoken = speakable_text(raw)
        if spoken is None:
            counts["spans_unspeakable"] += 1
            continue
        if len(spoken) > max_span_chars:
            counts["spans_too_long"] += 1
            continue
        if span_start > prev_end:
            segments.append(Segment(TEXT, text[prev_end:span_start]))
        segments.append(Segment(SPEECH, raw, spoken))
        prev_end = span_end
    if prev_end < len(text):
        segments.append(Segment(TEXT, text[prev_end:]))
    return DocumentPlan(merge_text_segments(segments), truncated=truncated, counts=counts)


def merge_text_segments(segments: Sequence[Segment]) -> list[Segment]:
    """Join neighbouring text segments (e.g. after a failed synthesis turned a span back into text), so the text
    between two speech spans is tokenized in one piece, exactly as in running text."""
    out: list[Segment] = []
    for seg in segments:
        if out and seg.modality == TEXT and out[-1].modality == TEXT:
            out[-1] = Segment(TEXT, out[-1].text + seg.text)
        elif seg.text:
            out.append(seg)
    return out


def assemble_example(
    segments: Sequence[Segment], token_ids: Sequence[Sequence[int]], vocab, eos_token_id: int | None = None
) -> tuple[list[int], list[dict[str, Any]]]:
    """Token ids of one document + readable segment records.

    `token_ids[i]` are text token ids for a text segment and speech ids (0..K-1) for a speech segment; `vocab` is a
    `SpeechVocab`. A speech segment becomes `<|begin_of_audio|> <|audio_*|>... <|end_of_audio|>`. Each record's
    `n_tokens` is what its segment occupies in `input_ids` (markers included), so the records tile `input_ids`
    (plus the final eos if given) and speech ids can be read back without storing them twice.
    """
    if len(segments) != len(token_ids):
        raise ValueError(f"{len(segments)} segments but {len(token_ids)} token lists")
    input_ids: list[int] = []
    records = []
    for seg, ids in zip(segments, token_ids):
        piece = vocab.wrap(ids) if seg.modality == SPEECH else [int(t) for t in ids]
        input_ids += piece
        records.append(
            {
                "modality": seg.modality,
                "text": seg.text.strip() if seg.modality == SPEECH else seg.text,
                "n_tokens": len(piece),
            }
        )
    if eos_token_id is not None:
        input_ids.append(int(eos_token_id))
    return input_ids, records


# ----------------------------------------------------------------------------------------------------------------
# The builder.
# ----------------------------------------------------------------------------------------------------------------


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


# --- the text source ---------------------------------------------------------------------------------------------

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


def iter_documents(ds, items: range, cfg: InterleavedConfig) -> Iterator[tuple[str, str | None]]:
    """`(doc_id, text)` for the rows `items` of the source (a contiguous range)."""
    import datasets

    if len(items) == 0:
        return
    if isinstance(ds, datasets.Dataset):
        cols = [c for c in (cfg.text_column, cfg.id_column) if c in ds.column_names]
        rows = ds.select_columns(cols).select(items)
    else:
        rows = ds.skip(items.start).take(len(items))
    for index, row in zip(items, rows):
        doc_id = row.get(cfg.id_column)
        text = row.get(cfg.text_column)
        yield (str(doc_id) if doc_id is not None else f"{index:09d}"), (text if isinstance(text, str) else None)


# --- one chunk of documents -> rows ------------------------------------------------------------------------------


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


@dataclass
class BuildStats:
    """Counters of a chunk/shard/build plus the span-length histograms (words and speech tokens per span)."""

    counts: Counter = field(default_factory=Counter)
    span_words: Counter = field(default_factory=Counter)
    span_tokens: Counter = field(default_factory=Counter)

    def update(self, other: BuildStats) -> None:
        self.counts.update(other.counts)
        self.span_words.update(other.span_words)
        self.span_tokens.update(other.span_tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "span_words": {str(k): v for k, v in self.span_words.items()},
            "span_tokens": {str(k): v for k, v in self.span_tokens.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildStats:
        return cls(
            Counter(data.get("counts", {})),
            Counter({int(k): v for k, v in data.get("span_words", {}).items()}),
            Counter({int(k): v for k, v in data.get("span_tokens", {}).items()}),
        )


def _plan_documents(docs, cfg: InterleavedConfig, stats: BuildStats) -> list[tuple[str, DocumentPlan]]:
    import numpy as np

    from modeling_speechtext.generation.text_to_token import stable_seed

    plans = []
    for doc_id, text in docs:
        stats.counts["documents_in"] += 1
        rng = np.random.default_rng(stable_seed(cfg.seed, doc_id))
        plan = plan_document(
            text, rng, eta=cfg.eta, granularity=cfg.granularity, lengths=cfg.lengths,
            max_document_chars=cfg.max_document_chars, max_span_chars=cfg.max_span_chars,
        )  # fmt: skip
        stats.counts["truncated_documents"] += plan.truncated
        if plan.skip_reason:
            stats.counts[f"skipped_{plan.skip_reason}"] += 1
        else:
            stats.counts.update(plan.counts)
            plans.append((doc_id, plan))
    return plans


def speech_pieces(speech_text: str, min_words: int = 4) -> list[str]:
    """The pieces of a span the text-to-token model reads one by one: its sentences, each short one joined to a
    neighbour. The model learned from single sentences of a few words: given two sentences it tends to close
    `<|end_of_audio|>` after the first, given a one-word fragment ("bathroom.") it often never stops (measured on
    the demo model: 83% of one-word and 44% of three-word sentences ran away, 0% from four words)."""
    pieces: list[str] = []
    for a, b in split_units(speech_text, "sentence"):
        sentence = speech_text[a:b]
        if pieces and len(pieces[-1].split()) < min_words:
            pieces[-1] += " " + sentence
        else:
            pieces.append(sentence)
    if len(pieces) > 1 and len(pieces[-1].split()) < min_words:
        last = pieces.pop()
        pieces[-1] += " " + last
    return pieces or [speech_text]


def _synthesize_spans(plans, synth, cfg: InterleavedConfig, stats: BuildStats) -> list[list[list[int]]]:
    """Every sentence of every speech span of the chunk in one `synthesize` call (the batching is what makes it
    fast). A runaway generation (cut by the token budget) would misrepresent its span, so that span goes back to
    text."""
    from modeling_speechtext.generation.text_to_token import stable_seed

    requests = []  # (doc, segment, piece index, text)
    for p, (_, plan) in enumerate(plans):
        for s, seg in enumerate(plan.segments):
            if seg.modality == SPEECH:
                pieces = speech_pieces(seg.speech_text, cfg.min_piece_words)
                requests += [(p, s, k, piece) for k, piece in enumerate(pieces)]
    start = time.perf_counter()
    out = synth.synthesize(
        [text for *_, text in requests],
        seeds=[stable_seed(cfg.seed, plans[p][0], s, k) for p, s, k, _ in requests],
        return_dict=True,
    )
    stats.counts["synthesis_seconds_x1000"] += int(1000 * (time.perf_counter() - start))
    stats.counts["synthesized_sentences"] += len(requests)
    spans: dict[tuple[int, int], list[int] | None] = {}
    for (p, s, _, _), ids, cut in zip(requests, out.speech_ids, out.truncated):
        stats.counts["synthesized_tokens"] += len(ids)
        done = spans.setdefault((p, s), [])
        spans[p, s] = None if cut or done is None else done + ids
    speech: list[list[list[int]]] = [[] for _ in plans]  # per document, its speech spans' ids in order
    for (p, s), ids in spans.items():  # insertion order = document order, segment order
        if ids is None:
            stats.counts["spans_runaway"] += 1
            plans[p][1].segments[s] = Segment(TEXT, plans[p][1].segments[s].text)
        else:
            speech[p].append(ids)
    for _, plan in plans:
        plan.segments = merge_text_segments(plan.segments)  # merging keeps the order of speech segments
    return speech


def _assemble_rows(plans, speech, synth, cfg: InterleavedConfig, stats: BuildStats) -> list[dict[str, Any]]:
    tok = synth.tokenizer
    keyed = [
        (p, s) for p, (_, plan) in enumerate(plans) for s, seg in enumerate(plan.segments) if seg.modality == TEXT
    ]
    texts = [plans[p][1].segments[s].text for p, s in keyed]
    text_ids = dict(zip(keyed, tok(texts, add_special_tokens=False)["input_ids"]))  # one tokenizer call per chunk
    eos = tok.eos_token_id if cfg.add_eos else None
    rows = []
    for p, (doc_id, plan) in enumerate(plans):
        spoken = iter(speech[p])
        ids = [next(spoken) if seg.modality == SPEECH else text_ids[p, s] for s, seg in enumerate(plan.segments)]
        input_ids, records = assemble_example(plan.segments, ids, synth.vocab, eos)
        spans = [(seg, i) for seg, i in zip(plan.segments, ids) if seg.modality == SPEECH]
        n_speech = sum(len(i) for _, i in spans)
        n_text = len(input_ids) - n_speech - 2 * len(spans) - (eos is not None)
        rows.append({"id": doc_id, "input_ids": input_ids, "segments": records, "n_text_tokens": n_text,
                     "n_speech_tokens": n_speech})  # fmt: skip
        c = stats.counts
        c["documents"] += 1
        c["documents_without_speech"] += not spans  # too short for a span at this eta, or nothing speakable
        c["spans_speech"] += len(spans)
        c["speech_tokens"] += n_speech
        c["text_tokens"] += n_text
        c["marker_tokens"] += 2 * len(spans) + (eos is not None)
        c["words_total"] += sum(seg.n_words for seg in plan.segments)
        c["chars_total"] += sum(len(seg.text.strip()) for seg in plan.segments)
        c["words_speech"] += sum(seg.n_words for seg, _ in spans)
        c["chars_speech"] += sum(len(seg.text.strip()) for seg, _ in spans)
        stats.span_words.update(seg.n_words for seg, _ in spans)
        stats.span_tokens.update(len(i) for _, i in spans)
    return rows


def interleave_documents(
    docs: Sequence[tuple[str, str | None]], synth, cfg: InterleavedConfig
) -> tuple[list[dict[str, Any]], BuildStats]:
    """`(doc_id, text)` pairs -> Parquet rows + statistics: plan spans, synthesize them together, assemble."""
    stats = BuildStats()
    plans = _plan_documents(docs, cfg, stats)
    speech = _synthesize_spans(plans, synth, cfg, stats)
    return _assemble_rows(plans, speech, synth, cfg, stats), stats


# --- shards, workers, ranks ---------------------------------------------------------------------------------------


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
    built = 0
    for shard in shards:
        if writer.done(shard):
            continue
        start = time.perf_counter()
        shard_stats = BuildStats()
        with writer.open(shard, schema) as f:
            docs = iter_documents(ds, plan.item_range(shard), cfg)
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


# --- statistics, card, upload -------------------------------------------------------------------------------------


def aggregate_stats(shard_stats: Sequence[dict[str, Any]], eta_requested: float) -> dict[str, Any]:
    """Sum the shards' counters and derive the headline numbers (eta achieved, speech/text ratio, speed)."""
    total_stats = BuildStats()
    for s in shard_stats:
        total_stats.update(BuildStats.from_json(s))
    counts, words, toks = total_stats.counts, total_stats.span_words, total_stats.span_tokens
    c = dict(counts)
    seconds = c.pop("seconds_x1000", 0) / 1000
    synth_seconds = c.pop("synthesis_seconds_x1000", 0) / 1000
    total = c.get("text_tokens", 0) + c.get("speech_tokens", 0) + c.get("marker_tokens", 0)
    spans = c.get("spans_speech", 0)

    def ratio(a, b):
        return round(a / b, 4) if b else 0.0

    return {
        **{k: int(v) for k, v in sorted(c.items())},
        "shards": len(shard_stats),
        "eta_requested": eta_requested,
        "eta_achieved_words": ratio(c.get("words_speech", 0), c.get("words_total", 0)),
        "eta_achieved_chars": ratio(c.get("chars_speech", 0), c.get("chars_total", 0)),
        "speech_to_text_token_ratio": ratio(c.get("speech_tokens", 0), c.get("text_tokens", 0)),
        "total_tokens": total,
        "mean_span_words": ratio(c.get("words_speech", 0), spans),
        "mean_span_speech_tokens": ratio(c.get("speech_tokens", 0), spans),
        "worker_seconds": round(seconds, 2),
        "tokens_per_second_per_worker": round(total / seconds, 1) if seconds else 0.0,
        "synthesis_tokens_per_second": round(c.get("synthesized_tokens", 0) / synth_seconds, 1)
        if synth_seconds
        else 0.0,
        "span_words_histogram": {str(k): words[k] for k in sorted(words)},
        "span_speech_tokens_histogram": {str(k): toks[k] for k in sorted(toks)},
    }


def plot_span_lengths(stats: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, label in zip(
        axes,
        ("span_words_histogram", "span_speech_tokens_histogram"),
        ("words per speech span", "speech tokens per span"),
    ):
        hist = {int(k): v for k, v in stats[key].items()}
        ax.bar(list(hist), list(hist.values()), width=1.0)
        ax.set_xlabel(label)
        ax.set_ylabel("spans")
    fig.suptitle(
        f"eta requested {stats['eta_requested']}, achieved {stats['eta_achieved_words']} (words); "
        f"speech/text tokens {stats['speech_to_text_token_ratio']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dataset_card(cfg: InterleavedConfig, stats: dict[str, Any], vocab) -> str:
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        tags=["speech", "speech-tokens", "interleaved", "speechtext", "synthetic"],
        task_categories=["text-generation"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    )
    rows = [
        (
            "documents (of which without a speech span)",
            f"{stats.get('documents', 0)} ({stats.get('documents_without_speech', 0)})",
        ),
        (
            "skipped (empty / no speakable text)",
            f"{stats.get('skipped_empty', 0)} / {stats.get('skipped_no_speakable_text', 0)}",
        ),
        ("truncated huge documents", stats.get("truncated_documents", 0)),
        ("speech spans", stats.get("spans_speech", 0)),
        (
            "spans kept as text (unspeakable / too long / runaway synthesis)",
            f"{stats.get('spans_unspeakable', 0)} / {stats.get('spans_too_long', 0)} / {stats.get('spans_runaway', 0)}",
        ),
        ("eta requested / achieved (words)", f"{stats['eta_requested']} / {stats['eta_achieved_words']}"),
        ("text tokens", stats.get("text_tokens", 0)),
        ("speech tokens", stats.get("speech_tokens", 0)),
        ("speech-to-text token ratio", stats["speech_to_text_token_ratio"]),
        ("mean span: words / speech tokens", f"{stats['mean_span_words']} / {stats['mean_span_speech_tokens']}"),
        ("synthesis speed (speech tokens/s per worker)", stats["synthesis_tokens_per_second"]),
        ("builder speed (tokens/s per worker)", stats["tokens_per_second_per_worker"]),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
{data.to_yaml()}
---

# Synthetic interleaved speech-text data

Built with speechtext's `dataset_builders/interleaved.py` (the GLM-4-Voice recipe,
[arXiv 2411.17607](https://arxiv.org/abs/2411.17607)): spans of text documents ({cfg.granularity} granularity, `eta` = {cfg.eta}, span lengths
`{cfg.lengths}`) replaced by the speech tokens a text-to-token model wrote for them, wrapped in
`<|begin_of_audio|>` / `<|end_of_audio|>`. No audio was synthesized.

Columns: `id`, `input_ids` (int32 token ids of the tokenizer in `tokenizer/`; speech token `<|audio_i|>` has id
{vocab.audio_offset} + i, codebook size {vocab.codebook_size}), `segments` (`modality`, `text`, `n_tokens`: the
segments tile `input_ids`, markers included{", then one eos" if cfg.add_eos else ""}), `n_text_tokens`,
`n_speech_tokens`.

```python
from datasets import load_dataset
ds = load_dataset("<this repo>", split="train")
```

## Statistics

| | |
|---|---|
{table}

Span length histogram: `span_lengths.png`; every number: `stats.json`.
"""


def finalize(cfg: InterleavedConfig, writer: ShardedParquetWriter, wall_seconds: float = 0.0) -> dict[str, Any]:
    """stats.json, the span-length plot, the dataset card and the tokenizer, from the shards' own statistics."""
    from transformers import AutoTokenizer

    from modeling_speechtext.vocab import SpeechVocab

    out = Path(cfg.output_dir)
    stats = aggregate_stats(writer.read_stats(), cfg.eta)
    stats["wall_seconds_last_run"] = round(wall_seconds, 2)
    tokenizer = AutoTokenizer.from_pretrained(cfg.t2t)
    vocab = SpeechVocab.from_tokenizer(tokenizer)
    tokenizer.save_pretrained(out / "tokenizer")
    stats["vocab"] = asdict(vocab)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    plot_span_lengths(stats, out / "span_lengths.png")
    (out / "README.md").write_text(dataset_card(cfg, stats, vocab))
    return stats


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload shards, card, stats, plot and tokenizer to a dataset repo; returns the commit URL."""
    from modeling_speechtext.hub.upload import upload_folder_to_hub

    return upload_folder_to_hub(
        folder,
        repo_id,
        repo_type="dataset",
        private=private,
        token=token,
        allow_patterns=["data/*.parquet", "README.md", "stats.json", "*.png", "tokenizer/*"],
        commit_message="Upload interleaved speech-text data (speechtext)",
    )


# --- pipeline stage and `python -m` entry --------------------------------------------------------------------------


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the text corpus's train documents + the trained text-to-token model -> `output_dir`."""
    values = dict(config)
    values.setdefault("source", str(Path(run_dir) / "text_corpus" / "documents"))
    values.setdefault("t2t", str(Path(run_dir) / "text_to_token"))
    values.setdefault("overwrite", True)  # the pipeline owns this folder: a changed config means rebuild
    values["output_dir"] = str(output_dir)
    stats = build_interleaved(InterleavedConfig.from_dict(values))
    keys = (
        "documents",
        "skipped_empty",
        "skipped_no_speakable_text",
        "spans_speech",
        "eta_requested",
        "eta_achieved_words",
        "speech_to_text_token_ratio",
        "text_tokens",
        "speech_tokens",
        "tokens_per_second_per_worker",
        "synthesis_tokens_per_second",
    )
    return {k: stats.get(k, 0) for k in keys}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from modeling_speechtext.cli import interleave

    parser = argparse.ArgumentParser(
        prog="python -m dataset_builders.interleaved", description=__doc__.splitlines()[0]
    )
    interleave.add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return interleave.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "TEXT",
    "SPEECH",
    "Segment",
    "DocumentPlan",
    "SpanLengthDistribution",
    "InterleavedConfig",
    "BuildStats",
    "split_units",
    "sample_spans",
    "speakable_text",
    "plan_document",
    "merge_text_segments",
    "speech_pieces",
    "assemble_example",
    "open_text_source",
    "iter_documents",
    "interleave_documents",
    "build_interleaved",
    "aggregate_stats",
    "finalize",
    "push_to_hub",
    "content_digest",
    "run_stage",
]

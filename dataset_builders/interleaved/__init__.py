"""Synthetic interleaved speech-text data: the paper's core idea (PAPER.md §4), built at speed and resumably.

Text documents -> spans sampled at word or sentence granularity covering a fraction `eta` of the words ->
each span replaced by the speech tokens a text-to-token model writes for it, wrapped in `<|begin_of_audio|>` /
`<|end_of_audio|>` -> one example per document::

    {"id": ..., "input_ids": int32[...],
     "segments": [{"modality": "text"|"speech", "text": ..., "n_tokens": ...}, ...],   # tiles input_ids
     "n_text_tokens": ..., "n_speech_tokens": ...}

`planning` holds the pure functions (units, span sampling, speakability, document plans, assembly), unit-tested
without any model; the other modules run them at scale. Documents are read from a local folder/file or streamed
from a Hub dataset (`sources`, one pass per worker), cut into contiguous shards (`build`), and each shard's spans
are synthesized together (`synthesis`; length-sorted batches: where the speed comes from). Shards are Parquet files
renamed into place when complete, so a killed build restarts where it stopped; shards are spread over `accelerate
launch` ranks x `num_proc` processes. Every random choice is seeded per document (`stable_seed(seed, doc id)`), so
the output does not depend on the layout of workers, on restarts, or on which documents share a batch.

CLI: `speechtext interleave --t2t DIR --text SOURCE --output_dir DIR --eta 0.3`, or on several processes
`accelerate launch --multi_gpu --num_processes 2 -m dataset_builders.interleaved --t2t ...` (torchrun underneath;
on a CPU-only machine the ranks talk over gloo; accelerate's own MULTI_CPU mode needs mpirun).
"""

from .build import build_interleaved
from .card import dataset_card, finalize, push_to_hub
from .config import InterleavedConfig, content_digest
from .planning import (
    SPEECH,
    TEXT,
    DocumentPlan,
    Segment,
    SpanLengthDistribution,
    assemble_example,
    merge_text_segments,
    plan_document,
    sample_spans,
    speakable_text,
    speech_pieces,
    split_units,
)
from .sources import DocumentReader, iter_documents, open_text_source
from .stage import run_stage
from .stats import BuildStats, aggregate_stats
from .synthesis import interleave_documents

__all__ = [
    "TEXT",
    "SPEECH",
    "Segment",
    "DocumentPlan",
    "SpanLengthDistribution",
    "InterleavedConfig",
    "BuildStats",
    "DocumentReader",
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
    "dataset_card",
    "finalize",
    "push_to_hub",
    "content_digest",
    "run_stage",
]

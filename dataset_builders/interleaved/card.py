"""What a finished build publishes: stats.json, the plot, the dataset card, the tokenizer; and the upload."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..parquet_shards import ShardedParquetWriter
from .config import InterleavedConfig
from .stats import aggregate_stats, plot_span_lengths


def dataset_card(cfg: InterleavedConfig, stats: dict[str, Any], vocab, folder: Path):
    """The dataset's README as a `huggingface_hub.DatasetCard`: metadata (tags, tasks, the `configs:` entry that
    points `load_dataset` at the shards) in `DatasetCardData`, the recipe, columns and statistics in the body."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from modeling_speechtext.hub.dataset_cards import parquet_dataset_info

    data = DatasetCardData(
        dataset_info=parquet_dataset_info(folder, ["train"]),
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
    body = f"""# Synthetic interleaved speech-text data

Built with speechtext's `dataset_builders/interleaved/` (the GLM-4-Voice recipe,
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
    # the card parses its own front matter back into `card.data`: what is written is what the Hub will read
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


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
    dataset_card(cfg, stats, vocab, out).save(out / "README.md")
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


__all__ = ["dataset_card", "finalize", "push_to_hub"]

"""The pipeline's `text_corpus` stage: build the corpus, return the headline numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .build import build_text_corpus
from .config import TextCorpusConfig


def run_stage(config: dict[str, Any], output_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Pipeline entry point: build the corpus, return the headline numbers (full detail in stats.json)."""
    stats = build_text_corpus(TextCorpusConfig.from_dict(dict(config)), output_dir)
    metrics: dict[str, Any] = {
        "source": stats["source"],
        "vocabulary_size": stats["vocabulary_size"],
        "document_words": stats["document_words"],
        "sentence_words": stats["sentence_words"],
    }
    for split, s in stats["splits"].items():
        metrics[f"{split}_documents"] = s["documents"]
        metrics[f"{split}_sentences"] = s["sentences"]
        if "qa" in s:
            metrics[f"{split}_qa"] = s["qa"]
    return metrics


__all__ = ["run_stage"]

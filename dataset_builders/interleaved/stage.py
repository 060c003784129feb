"""The pipeline stage (`dataset_builders.interleaved:run_stage`): text corpus + text-to-token model -> data."""

from __future__ import annotations

from pathlib import Path

from .build import build_interleaved
from .config import InterleavedConfig


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


__all__ = ["run_stage"]

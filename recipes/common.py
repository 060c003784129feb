"""What every training recipe does the same way: the loss-curve plot and the ending of a run.

Written once so that the recipes agree on the file names and the order of the ending: the card is written from
the very metrics that `metrics.json` holds, and the checkpoints are deleted only after both are on disk (a crash
before that point leaves a run that resumes instead of one that has lost its checkpoints and its results).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def plot_loss_curve(log_history: list[dict], path: Path, ylabel: str, eval_label: str = "eval") -> None:
    """Train loss (line) and eval loss (markers) against the step, from a `Trainer`'s `state.log_history`."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the recipes run on servers and in tests
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for points, label in ((train, "train"), (evals, eval_label)):
        if points:
            ax.plot(*zip(*points), marker="o" if label == eval_label else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def finish_run(
    output_dir: Path, metrics: dict[str, Any], card: str | None, keep_checkpoints: bool = False, trailing_newline=True
) -> None:
    """metrics.json -> README.md (the model card) -> delete `checkpoint-*` (the saved final folder supersedes them)."""
    output_dir = Path(output_dir)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + ("\n" if trailing_newline else ""))
    if card is not None:
        (output_dir / "README.md").write_text(card)
    if not keep_checkpoints:
        for ckpt in output_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)


def run_trl_stage(parser, train, config: dict, output_dir: Path, run_dir: Path) -> dict:
    """The pipeline adapter of a TrlParser recipe: the preset's YAML as arguments, `run_dir`/`output_dir` added,
    `use_cpu` on a machine without CUDA (transformers refuses bf16 on a CPU unless told it is one)."""
    import torch

    values = {"run_dir": str(run_dir), **config, "output_dir": str(output_dir)}
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)
    return train(*parser.parse_dict(values))


def run_trl_main(parser, train, argv: list[str] | None = None) -> dict:
    """The command line of a TrlParser recipe: `--config file.yaml` + flag overrides, INFO logging."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return train(*parser.parse_args_and_config(args=argv))


__all__ = ["finish_run", "plot_loss_curve", "run_trl_main", "run_trl_stage"]

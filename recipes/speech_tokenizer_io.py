"""Checkpoints and plots of the speech tokenizer recipe (`recipes/train_speech_tokenizer.py`), kept apart so
that the recipe file holds the training itself.

Checkpoints stay hand-written (not `Accelerator.save_state`) for now: they carry the quantizer state machine
(`state`), and the crash-safety rule that a half-written `checkpoint-N.tmp` is never loaded is tested here.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path


def _checkpoints(output_dir: Path) -> list[Path]:
    """Finished checkpoint folders by step; a `checkpoint-N.tmp` left by a crash mid-save is not one."""
    found = [(int(m.group(1)), p) for p in (output_dir / "checkpoints").glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]  # fmt: skip
    return [p for _, p in sorted(found)]


def last_checkpoint(output_dir: Path) -> Path | None:
    ckpts = [c for c in _checkpoints(output_dir) if (c / "trainer_state.json").is_file()]
    return ckpts[-1] if ckpts else None


def save_checkpoint(model, optimizer, scheduler, state: dict, output_dir: Path, limit: int) -> None:
    import torch

    ckpt = output_dir / "checkpoints" / f"checkpoint-{state['step']}"
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    torch.save({"python": random.getstate(), "torch": torch.get_rng_state()}, tmp / "rng_state.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state))  # written last: its presence = complete
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)
    old = _checkpoints(output_dir)
    for stale in old[: max(len(old) - limit, 0)]:
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(ckpt: Path):
    import torch

    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    model = SpeechTokenizerModel.from_pretrained(ckpt)
    model.freeze_positional_embeddings()
    opt = torch.load(ckpt / "optimizer.pt", weights_only=False)
    rng = torch.load(ckpt / "rng_state.pt", weights_only=False)
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    return model, opt, json.loads((ckpt / "trainer_state.json").read_text())


# ---------------------------------------------------------------------------------------------- training
def plot(state: dict, counts: dict[str, list[int]], codebook_size: int, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = state["history"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if hist:
        steps = [h["step"] for h in hist]
        for key in ("loss", "ctc", "aux", "commit"):
            axes[0].plot(steps, [h[key] for h in hist], label=key)
    axes[0].set_xlabel("step")
    axes[0].set_yscale("log")
    axes[0].set_title("training losses")
    axes[0].legend()
    if state["evals"]:
        steps = [e["step"] for e in state["evals"]]
        axes[1].plot(steps, [e["wer"] for e in state["evals"]], "o-", label="WER via tokens")
        axes[1].plot(steps, [e["wer_no_vq"] for e in state["evals"]], "s--", label="WER without VQ")
        axes[1].plot(steps, [e["codebook_usage"] for e in state["evals"]], "^:", label="codebook usage")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss_curves.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, c in counts.items():
        ordered = sorted(c, reverse=True)
        used = sum(1 for x in c if x)
        ax.plot(
            range(1, codebook_size + 1), [max(x, 0.5) for x in ordered], label=f"{name} ({used}/{codebook_size} used)"
        )
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("count")
    ax.set_title("codebook usage (codes sorted by frequency)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "codebook_usage.png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- entry points

__all__ = ["last_checkpoint", "load_checkpoint", "plot", "save_checkpoint"]

"""Speech-text pretraining (PAPER.md §5): the base LM, its vocabulary extended with the speech tokens, trained with
TRL's `SFTTrainer` on the mixture of text, interleaved, speech-only, ASR and TTS data.

Usage:

    python -m recipes.pretrain --config recipes/configs/demo/pretrain.yaml --run_dir runs/demo \\
        --output_dir runs/demo/pretrain
    accelerate launch --multi_gpu --num_processes 2 -m recipes.pretrain --config ... (torchrun; gloo on CPU)

Inputs (from `run_dir` unless set): the base LM (`base_lm/`: a folder, or the model its `base_lm.json` names),
the speech tokenizer (its codebook size), and the parts of `mixture` (see `modeling_speechtext.data.mixture`). Each part
is rendered into `input_ids` + `completion_mask` with the extended tokenizer; `completion_only_loss` turns the
mask into labels (all tokens for text/interleaved/speech, the text of ASR, the speech of TTS) before TRL packs the
stream into `max_length` blocks. A few examples of each part are held out and evaluated separately, so the loss
curve of every part is drawn (`loss_curves.png`). The output is a plain causal LM folder with the extended
tokenizer: `AutoModelForCausalLM` + `AutoTokenizer` load it. An interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trl import SFTConfig

from modeling_speechtext.hardware import AutoPrecisionMixin, reset_accelerator_precision

logger = logging.getLogger("pretrain")


@dataclass
class PretrainArguments:
    """Inputs and the mixture (`PretrainSFTConfig` holds the optimisation fields)."""

    run_dir: str | None = field(default=None, metadata={"help": "run folder with base_lm/, speech_tokenizer/, ..."})
    base_lm: str | None = field(
        default=None, metadata={"help": "causal LM (folder or Hub id); default <run_dir>/base_lm"}
    )
    speech_tokenizer: str | None = field(default=None, metadata={"help": "default: <run_dir>/speech_tokenizer"})
    codebook_size: int | None = field(default=None, metadata={"help": "default: the speech tokenizer's"})
    mixture: dict | None = field(
        default=None,
        metadata={"help": "parts: {name: {kind, share, source, split, ...}} (modeling_speechtext.data.mixture)"},
    )
    eval_examples_per_part: int = field(default=32, metadata={"help": "held-out examples per part (per-part loss)"})
    keep_checkpoints: bool = False
    num_threads: int | None = None


@dataclass
class PretrainSFTConfig(AutoPrecisionMixin, SFTConfig):
    """`SFTConfig` with `bf16: auto`, wrapped packing (see recipes/train_base_lm.py for why not bfd on CPU),
    completion-only loss (the mixture's masks), and tokens seen counted (the ablation's token budget)."""

    packing: bool = True
    packing_strategy: str = "wrapped"
    completion_only_loss: bool | None = True
    include_num_input_tokens_seen: str = field(default="non_padding", metadata={"help": "all, non_padding or no"})


def _codebook_size(args: PretrainArguments, run: Path | None) -> int:
    if args.codebook_size:
        return args.codebook_size
    folder = Path(args.speech_tokenizer) if args.speech_tokenizer else (run / "speech_tokenizer" if run else None)
    if folder is None or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"speech tokenizer: {folder} not found (set --codebook_size or --speech_tokenizer)")
    return int(json.loads((folder / "config.json").read_text())["codebook_size"])


def load_extended_lm(base: str, codebook_size: int):
    """The base LM and its tokenizer with the speech tokens added (new rows mean-initialised)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.vocab import add_speech_tokens

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{base}: the tokenizer has no eos token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base)
    vocab = add_speech_tokens(model, tokenizer, codebook_size)  # another codebook's tokens: a clear ValueError
    return model, tokenizer, vocab


def render(dataset, tokenizer, vocab, max_length: int | None = None):
    """Neutral mixture rows -> `input_ids` + `completion_mask` (+ `part`, `id`), dropping rows with no loss token."""
    from modeling_speechtext.data.mixture import render_segments

    def encode(batch):
        out = {"input_ids": [], "completion_mask": []}
        for segments in batch["segments"]:
            r = render_segments(segments, tokenizer, vocab)
            out["input_ids"].append(r["input_ids"])
            out["completion_mask"].append(r["completion_mask"])
        return out

    keep = [c for c in dataset.column_names if c not in ("part", "id")]
    return dataset.map(encode, batched=True, remove_columns=keep, desc="rendering the mixture").filter(
        lambda m: any(m), input_columns="completion_mask"
    )


def split_held_out(rendered, n: int, seed: int):
    """(train, {part: eval}): up to `n` distinct examples of each part (at most a tenth of it) held out. Chosen by
    (part, id), and every copy of a chosen example leaves training: oversampling repeats small parts."""
    import random

    rng = random.Random(seed)
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(rendered["part"], rendered["id"])):
        first.setdefault(key, i)
    chosen: set[tuple[str, str]] = set()
    held = {}
    for part in sorted({p for p, _ in first}):
        keys = sorted(k for k in first if k[0] == part)
        pick = rng.sample(keys, min(n, max(len(keys) // 10, 1))) if n else []
        chosen.update(pick)
        held[part] = rendered.select([first[k] for k in pick])
    keep = [i for i, key in enumerate(zip(rendered["part"], rendered["id"])) if key not in chosen]
    return rendered.select(keep), {p: d for p, d in held.items() if len(d)}


def plot_part_losses(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    if train:
        ax.plot(*zip(*train), label="train (mixture)", color="black", alpha=0.6)
    keys = sorted({k for h in log_history for k in h if k.startswith("eval_") and k.endswith("_loss")})
    for key in keys:
        points = [(h["step"], h[key]) for h in log_history if key in h]
        ax.plot(*zip(*points), marker="o", label=key[len("eval_") : -len("_loss")])
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on loss tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(args: PretrainArguments, training_args: PretrainSFTConfig) -> dict[str, Any]:
    """Extend -> mix -> render -> SFTTrainer -> save -> per-part float32 eval -> metrics."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from modeling_speechtext.data.mixture import build_mixture
    from recipes.common import finish_run
    from recipes.lm_trainer import CausalLMSFTTrainer
    from recipes.train_base_lm import read_reference

    start = time.perf_counter()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(training_args.seed)
    run = Path(args.run_dir) if args.run_dir else None
    base = args.base_lm or (read_reference(run / "base_lm") if run else None)
    if base is None:
        raise ValueError("no base LM: set --base_lm or --run_dir")
    if not args.mixture:
        raise ValueError("no mixture: give `mixture: {parts: ...}` in the config")
    model, tokenizer, vocab = load_extended_lm(base, _codebook_size(args, run))
    mixed, info = build_mixture(args.mixture, run, tokenizer, vocab, seed=training_args.seed)
    train_rows, held = split_held_out(render(mixed, tokenizer, vocab), args.eval_examples_per_part, training_args.seed)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and (training_args.max_length is None or training_args.max_length > positions):
        training_args.max_length = positions
    output_dir = Path(training_args.output_dir)
    reset_accelerator_precision()
    trainer = CausalLMSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_rows.remove_columns(["part", "id"]),
        eval_dataset={p: d.remove_columns(["part", "id"]) for p, d in held.items()},
        processing_class=tokenizer,
    )
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last:
        logger.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(output_dir))  # on every rank (FSDP/ZeRO-3 gather the weights); the main one writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir))
    trainer.accelerator.wait_for_everyone()  # the folder is whole before any rank loads it
    # per-part loss of what a user loads: the saved folder in float32. Every rank evaluates: the evaluator's dataset
    # preparation and evaluation are collective (a rank that had already returned left rank 0 failing in a barrier).
    saved = AutoModelForCausalLM.from_pretrained(str(output_dir), dtype=torch.float32).eval()
    reset_accelerator_precision()
    evaluator = CausalLMSFTTrainer(
        model=saved, args=replace(training_args, bf16=False, fp16=False), train_dataset=train_rows.select(range(1)).remove_columns(["part", "id"]),
        eval_dataset={p: d.remove_columns(["part", "id"]) for p, d in held.items()}, processing_class=tokenizer,
    )  # fmt: skip
    losses = {
        k[len("eval_") : -len("_loss")]: round(v, 4) for k, v in evaluator.evaluate().items() if k.endswith("_loss")
    }
    if not trainer.is_world_process_zero():
        return {}
    metrics: dict[str, Any] = {
        "base_lm": base,
        "codebook_size": vocab.codebook_size,
        "vocab_size": len(tokenizer),
        "params": sum(p.numel() for p in model.parameters()),
        "train_loss": round(result.training_loss, 4),
        "eval_loss_by_part": losses,
        "eval_perplexity_by_part": {p: round(math.exp(v), 3) for p, v in losses.items()},
        "steps": trainer.state.global_step,
        "train_tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "train_examples": len(train_rows),
        "mixture": info,
        "resumed_from": Path(last).name if last else None,
        "bf16": bool(training_args.bf16),
        "num_processes": trainer.accelerator.num_processes,
    }
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    plot_part_losses(trainer.state.log_history, output_dir / "loss_curves.png")
    finish_run(output_dir, metrics, pretrain_card(metrics), keep_checkpoints=args.keep_checkpoints)
    logger.info("metrics: %s", json.dumps(metrics))
    return metrics


def pretrain_card(metrics: dict[str, Any]) -> str:
    """Model card: what it is, what it was trained on, its per-part losses; the `eval` stage adds its section."""
    parts = "\n".join(f"| {n} | {p['kind']} | {p['token_share']} | {p['mean_tokens']} | "
                      f"{metrics['eval_loss_by_part'].get(n, '-')} |" for n, p in metrics["mixture"].items())  # fmt: skip
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [speechtext, speech-text-lm, causal-lm]
---
# speechtext speech-text LM (pretrained)

A stock causal LM ({metrics["params"] / 1e6:.2f}M parameters, grown from `{metrics["base_lm"]}`) whose vocabulary
also holds {metrics["codebook_size"]} speech tokens `<|audio_N|>` between `<|begin_of_audio|>` and `<|end_of_audio|>`,
pretrained on text, interleaved speech-text, speech-only and ASR/TTS data (GLM-4-Voice recipe, arXiv:2411.17607).
{metrics["steps"]} steps, {metrics["train_tokens_seen"]} training tokens. No remote code.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("PATH")
tokenizer = AutoTokenizer.from_pretrained("PATH")
```

| mixture part | kind | token share | mean tokens | held-out loss (float32) |
|---|---|---|---|---|
{parts}
"""


def _parser():
    from trl import TrlParser

    return TrlParser((PretrainArguments, PretrainSFTConfig))


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the preset's `pretrain.yaml` holds `PretrainArguments` and `SFTConfig` fields."""
    from recipes.common import run_trl_stage

    return run_trl_stage(_parser(), train, config, output_dir, run_dir)


def main(argv: list[str] | None = None) -> dict:
    from recipes.common import run_trl_main

    return run_trl_main(_parser(), train, argv)


if __name__ == "__main__":
    main()

__all__ = ["PretrainArguments", "PretrainSFTConfig", "load_extended_lm", "render", "run_stage", "train"]

"""How much does the pretraining recipe (TRL SFTTrainer + packing + completion masks) cost over a bare PyTorch loop,
and what fraction of this machine's matmul peak does training reach?

The preset's base LM shape (`--preset demo`: base_lm.yaml) with the speech vocabulary added, the pretrain preset's
batch (`per_device_train_batch_size` x `max_length` tokens) and the precision `bf16: auto` picks here. Three arms
train the same model from the same initial weights on the same random token stream: the recipe's trainer
(`recipes.lm_trainer.CausalLMSFTTrainer`), a bare loop, and TRL's own `SFTTrainer` (its fused LM-head loss, which
the recipe's trainer replaces; recipes/lm_trainer.py says why). They alternate (recipe, bare, TRL, recipe, ...) in
one process so all see the same machine load; the two trainers' training losses are reported side by side (same
objective, so they should agree). Step times are the median over steps after a warm-up. A matmul of the model's
width in the same precision, timed in the same process, gives the peak the achieved FLOP/s are compared with (training FLOPs per token ~ 6 x parameters + the attention
term 12 x layers x hidden x sequence length).

    .venv/bin/python bench/bench_pretrain.py                     # demo sizes, 2 rounds x 8 steps
    .venv/bin/python bench/bench_pretrain.py --preset tiny --rounds 3 --steps 10 --output runs/bench_pretrain.json

Goal (issue 20): recipe / bare <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from modeling_speechtext.hardware import detect_hardware, resolve_bf16
from modeling_speechtext.pipeline.presets import load_preset

CODEBOOK = 1024  # the demo tokenizer's codebook; +2 markers
TEXT_VOCAB = 400


def make_model(cfg: dict, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        cfg.get("model_type", "llama"), vocab_size=TEXT_VOCAB + CODEBOOK + 2, hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"], max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config)


def token_rows(n_rows: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab, (n_rows, length), generator=g).tolist()


class StepTimer:
    """TrainerCallback-style step timing (kept duck-typed so the bare loop can use it too)."""

    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, *args, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, *args, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def recipe_steps(
    cfg: dict,
    batch: int,
    length: int,
    steps: int,
    bf16: bool,
    rows,
    gradient_checkpointing: bool = False,
    stock_trl: bool = False,
) -> tuple[list[float], float]:
    """Step times and training loss of the recipe's trainer (`recipes.lm_trainer.CausalLMSFTTrainer`) or, with `stock_trl`, of TRL's
    own `SFTTrainer` (its fused LM-head loss path), same arguments otherwise."""
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast, TrainerCallback
    from trl import SFTTrainer

    from modeling_speechtext.hardware import reset_accelerator_precision
    from recipes.lm_trainer import CausalLMSFTTrainer
    from recipes.pretrain import PretrainSFTConfig

    class Timer(StepTimer, TrainerCallback):
        pass

    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1}, "<pad>")),
                                  pad_token="<pad>", eos_token="<eos>")  # fmt: skip
    data = Dataset.from_dict({"input_ids": rows, "completion_mask": [[1] * len(r) for r in rows]})
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        args = PretrainSFTConfig(
            output_dir=out, max_length=length, per_device_train_batch_size=batch, max_steps=steps,
            learning_rate=1e-3, use_cpu=not torch.cuda.is_available(), bf16=bf16, report_to="none",
            save_strategy="no", logging_steps=10_000, dataloader_num_workers=0, disable_tqdm=True,
            # SFTConfig turns gradient checkpointing on by default; the preset (and the bare loop) do not
            gradient_checkpointing=gradient_checkpointing,
        )  # fmt: skip
        reset_accelerator_precision()
        trainer_cls = SFTTrainer if stock_trl else CausalLMSFTTrainer
        trainer = trainer_cls(model=make_model(cfg), args=args, train_dataset=data, processing_class=tok,
                              callbacks=[timer])  # fmt: skip
        loss = trainer.train().training_loss
    return timer.times, loss


def bare_steps(cfg: dict, batch: int, length: int, steps: int, bf16: bool, rows) -> list[float]:
    """The same model, optimiser and batches in a plain loop: forward, backward, clip, step, zero_grad."""
    model = make_model(cfg)
    model.train()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    stream = torch.tensor([t for r in rows for t in r])
    timer = StepTimer()
    for step in range(steps):
        chunk = stream[step * batch * length : (step + 1) * batch * length].view(batch, length).to(device)
        timer.on_step_begin()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=chunk, labels=chunk).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        timer.on_step_end()
    return timer.times


def matmul_peak(n: int, bf16: bool, repeats: int = 20) -> float:
    """FLOP/s of an n x n matmul in the training precision (the best of `repeats`)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="steps per arm and round (the first 2 are warm-up)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    preset = load_preset(a.preset)
    cfg, pre = preset["base_lm"], preset["pretrain"]
    batch, length = pre["per_device_train_batch_size"], pre["max_length"]
    bf16 = resolve_bf16("auto", use_cpu=not torch.cuda.is_available()).bf16
    rows = token_rows(batch * (a.steps + 1), length, TEXT_VOCAB + CODEBOOK)
    recipe, stock, bare = [], [], []
    checkpointing = pre.get("gradient_checkpointing", False)
    for _ in range(a.rounds):
        times, recipe_loss = recipe_steps(cfg, batch, length, a.steps, bf16, rows, checkpointing)
        recipe += times[2:]
        bare += bare_steps(cfg, batch, length, a.steps, bf16, rows)[2:]
        times, stock_loss = recipe_steps(cfg, batch, length, a.steps, bf16, rows, checkpointing, stock_trl=True)
        stock += times[2:]
    model = make_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    tokens = batch * length
    flops_per_step = tokens * (6 * params + 12 * cfg["num_hidden_layers"] * cfg["hidden_size"] * length)
    peak = matmul_peak(max(cfg["hidden_size"] * 4, 1024), bf16)
    r, b, st = statistics.median(recipe), statistics.median(bare), statistics.median(stock)
    hw = detect_hardware()
    report = {
        "cpu": hw.cpu_model, "threads": torch.get_num_threads(), "precision": "bf16" if bf16 else "float32",
        "preset": a.preset, "params": params, "batch": f"{batch} x {length} tokens",
        "recipe_s_per_step": round(r, 4), "bare_s_per_step": round(b, 4), "recipe_over_bare": round(r / b, 3),
        "stock_trl_s_per_step": round(st, 4), "stock_trl_over_bare": round(st / b, 3),
        "recipe_train_loss": round(recipe_loss, 4), "stock_trl_train_loss": round(stock_loss, 4),
        "recipe_tokens_per_s": round(tokens / r), "bare_tokens_per_s": round(tokens / b),
        "achieved_tflops": round(flops_per_step / r / 1e12, 4), "matmul_peak_tflops": round(peak / 1e12, 4),
        "fraction_of_peak": round(flops_per_step / r / peak, 3), "steps_timed_per_arm": len(recipe),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    if a.output:
        with open(a.output, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

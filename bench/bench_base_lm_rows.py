"""How fast does the demo-size base LM learn bAbI T->T, by what a training row is?

A side experiment behind the demo's `packing: false` (docs/SPEECH_TEXT_LM.md, "Why the demo base LM did not
learn bAbI"): the same Llama shape as `recipes/configs/<preset>/base_lm.yaml`, AdamW + cosine, bf16 autocast where
`bf16: auto` picks it, trained in a bare loop on one kind of row, with T->T ranked accuracy on the same
validation questions every `--eval_every` steps:

- `blocks`: the documents concatenated (eos between) and cut into `--length` blocks (wrapped packing);
- `whole`: one document per row, padded per batch (packing off);
- `qa`: story + question -> answer rows of `text_corpus/qa`, loss on the answer only;
- `--qa_fraction F` with `blocks`/`whole`: that fraction of each batch are such QA rows.

    .venv/bin/python bench/bench_base_lm_rows.py --run_dir runs/demo --rows whole --steps 900 --batch 32
    .venv/bin/python bench/bench_base_lm_rows.py --run_dir runs/demo --rows blocks --steps 600 --batch 16

A bare loop, not the recipe, so that one run takes minutes and the rows are the only difference; the recipe's own
numbers are the base_lm stage's `metrics.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from modeling_speechtext.evaluation.babi_qa import text_qa_accuracy
from modeling_speechtext.hardware import resolve_bf16
from modeling_speechtext.pipeline.presets import load_preset
from recipes.train_base_lm import question_row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", required=True, help="a run with text_corpus/ and text_tokenizer/")
    ap.add_argument("--preset", default="demo", help="whose base_lm.yaml gives the model shape and tasks")
    ap.add_argument("--rows", choices=("blocks", "whole", "qa"), default="whole")
    ap.add_argument("--qa_fraction", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval_every", type=int, default=150)
    ap.add_argument("--eval_questions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--output")
    a = ap.parse_args()
    from datasets import load_from_disk
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    cfg = load_preset(a.preset)["base_lm"]
    run = Path(a.run_dir)
    tok = AutoTokenizer.from_pretrained(run / "text_tokenizer")
    sources = set(cfg.get("sources") or [])
    docs = load_from_disk(str(run / "text_corpus" / "documents"))["train"]
    if sources:
        docs = docs.filter(lambda s: s in sources, input_columns="source")
    qa = load_from_disk(str(run / "text_corpus" / "qa"))
    tasks = {int(s.split("qa")[-1]) for s in sources} or set(qa["validation"]["task"])
    encoded = [tok(t)["input_ids"] + [tok.eos_token_id] for t in docs.shuffle(seed=a.seed)["text"]]
    stream = [i for e in encoded for i in e]
    blocks = [stream[i : i + a.length] for i in range(0, len(stream) - a.length, a.length)]
    qa_train = [r for r in qa["train"] if r["task"] in tasks]
    answer_sets: dict[int, list[str]] = {}
    for r in qa["train"]:
        if r["answer"] not in answer_sets.setdefault(r["task"], []):
            answer_sets[r["task"]].append(r["answer"])
    validation = [r for r in qa["validation"].shuffle(seed=0) if r["task"] in tasks][: a.eval_questions]

    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(
            cfg.get("model_type", "llama"), vocab_size=len(tok), hidden_size=cfg["hidden_size"],
            num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
            intermediate_size=cfg["intermediate_size"], max_position_embeddings=cfg["max_position_embeddings"],
            tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
    )  # fmt: skip
    bf16 = resolve_bf16("auto", use_cpu=True).bf16
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    warmup = max(1, int(0.05 * a.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps))
    )

    def qa_row() -> tuple[list[int], list[int]]:
        # the recipe's row (recipes.train_base_lm.question_row) without its eos, the prompt's start cut to fit
        row = question_row(tok, rng.choice(qa_train))
        ids, mask = row["input_ids"][:-1][-a.length :], row["completion_mask"][:-1][-a.length :]
        return ids, [t if m else -100 for t, m in zip(ids, mask)]

    curve, tokens, start = [], 0, time.perf_counter()
    for step in range(1, a.steps + 1):
        n_qa = a.batch if a.rows == "qa" else sum(rng.random() < a.qa_fraction for _ in range(a.batch))
        rows = [qa_row() for _ in range(n_qa)]
        pool = blocks if a.rows == "blocks" else encoded
        rows += [(r, r) for r in (rng.choice(pool) for _ in range(a.batch - n_qa))]
        n = max(len(ids) for ids, _ in rows)
        ids = torch.tensor([x + [tok.pad_token_id] * (n - len(x)) for x, _ in rows])
        labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in rows])
        mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in rows])
        tokens += int(mask.sum())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            acc = text_qa_accuracy(model, tok, validation, answer_sets)
            model.train()
            point = {"step": step, "tokens": tokens, "seconds": round(time.perf_counter() - start, 1),
                     "loss": round(loss.item(), 4), **{f"task{t}": round(v["ranked"], 3) for t, v in acc.items()}}  # fmt: skip
            curve.append(point)
            print(json.dumps(point), flush=True)
    if a.output:
        Path(a.output).write_text(json.dumps({"args": vars(a), "curve": curve}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

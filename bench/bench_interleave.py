"""How fast is synthetic interleaved data made, and does the builder stream?

1. Synthesizer speed: speech tokens/s of `TextToTokenSynthesizer` (continuous batching, and length-sorted `generate()` batches)
   against the naive loop (one span at a time, batch 1) on the same model and spans, in one run. Per-row seeded
   sampling and per-row token budgets make both produce identical tokens (checked).
2. Builder end to end: tokens/s of `build_interleaved` (spans sampled, synthesized, tokenized, written as Parquet).
3. Memory: peak RSS of a fresh build process as the corpus grows (each size in its own subprocess).

    .venv/bin/python bench/bench_interleave.py --t2t runs/demo/text_to_token --run_dir runs/demo
    .venv/bin/python bench/bench_interleave.py            # a random demo-size model and generated sentences

Prints a JSON report (also written to --output).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "mary john sandra daniel went moved travelled journeyed to the kitchen garden office bathroom hallway "
    "bedroom picked up dropped milk football apple is in where north south of"
).split()


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "." for _ in range(n)]


def _random_t2t(path: Path, codebook_size: int = 512) -> None:
    """A demo-size (~4M) model with random weights; its speed is what matters here, not its speech."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from modeling_speechtext.generation.text_to_token import (
        SynthesisConfig,
        TextToTokenSynthesizer,
        build_text_to_token_model,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_sentences(2000, 0), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model, _ = build_text_to_token_model(tokenizer, codebook_size, {"max_position_embeddings": 512})
    # ~0.8 tokens/char (12.5 Hz speech): long enough spans to make generation the cost, as with a trained model
    TextToTokenSynthesizer(model, tokenizer, SynthesisConfig(max_tokens_per_char=0.8, batch_size=64)).save_pretrained(
        path
    )


def bench_synthesizer(
    t2t: str,
    texts: list[str],
    batch_size: int,
    threads: int,
    dtype: str | None,
    cache=None,
) -> dict:
    import torch

    from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer

    torch.set_num_threads(threads)
    synth = TextToTokenSynthesizer.from_pretrained(t2t, dtype=getattr(torch, dtype) if dtype else None)
    synth.synthesize(texts[:4], batch_size=4)  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    # the naive loop keeps the dynamic cache (its best setting at batch 1)
    naive = [synth.synthesize([t], batch_size=1, continuous_batching=False)[0] for t in texts]
    naive_s = time.perf_counter() - t0
    # length-sorted generate() batches: every row of a batch is computed until its last row ends
    one = synth.synthesize(texts, batch_size=batch_size, return_dict=True, cache_implementation=cache,
                           continuous_batching=False)  # fmt: skip
    out = synth.synthesize(texts, batch_size=batch_size, return_dict=True, continuous_batching=True)
    n_tokens = sum(map(len, naive))
    return {
        "spans": len(texts),
        "mean_span_chars": round(sum(map(len, texts)) / len(texts), 1),
        "speech_tokens": n_tokens,
        # per-row seeded sampling and per-row budgets: a text's tokens do not depend on its batch
        "identical_outputs": out.speech_ids == naive == one.speech_ids,
        "naive_batch1_tokens_per_s": round(n_tokens / naive_s, 1),
        "batched_tokens_per_s": round(out.num_tokens / out.seconds, 1),
        "speedup": round((out.num_tokens / out.seconds) / (n_tokens / naive_s), 2),
        "generate_batches_tokens_per_s": round(one.num_tokens / one.seconds, 1),
        "speedup_generate_batches": round((one.num_tokens / one.seconds) / (n_tokens / naive_s), 2),
        "refill_below": synth.config.refill_below,
        "batch_size": batch_size,
        "threads": threads,
        "dtype": dtype or "float32",
        "generate_batches_cache": cache or "dynamic",
        "runaways_cut": sum(out.truncated),
    }


_BUILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from dataset_builders.interleaved import build_interleaved
t0 = time.perf_counter()
stats = build_interleaved({cfg!r})
print(json.dumps({{"wall": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "total_tokens": stats["total_tokens"], "documents": stats["documents"],
                  "tokens_per_second_per_worker": stats["tokens_per_second_per_worker"],
                  "eta": stats["eta_achieved_words"]}}))
"""


def bench_builder(t2t: str, sizes: list[int], workdir: Path, threads: int, seed: int) -> list[dict]:
    """Build corpora of growing size, each in a fresh process (so peak RSS is that build's alone)."""
    from datasets import Dataset

    rng = random.Random(seed)
    docs = ["\n".join(_sentences(rng.randint(4, 12), rng.randrange(10**9))) for _ in range(max(sizes))]
    Dataset.from_dict({"id": [f"d{i}" for i in range(len(docs))], "text": docs}).save_to_disk(workdir / "docs")
    rows = []
    for n in sizes:
        cfg = {
            "source": str(workdir / "docs"),
            "t2t": t2t,
            "output_dir": str(workdir / f"out{n}"),
            "max_documents": n,
            "documents_per_shard": 500,
            "chunk_documents": 256,
            "granularity": "sentence",
            "span_length": {"distribution": "geometric", "mean": 1.5, "max": 4},
            "synthesis": {"batch_size": 128},
        }
        script = _BUILD.format(root=str(ROOT), threads=threads, cfg=cfg)
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["tokens_per_second_wall"] = round(r["total_tokens"] / r["wall"], 1)
        r["peak_rss_mb"] = round(r["peak_rss_mb"], 1)
        rows.append(
            {"documents_requested": n, **{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t2t", help="text-to-token folder (default: a random demo-size model)")
    parser.add_argument("--run_dir", help="take held-out sentences from <run_dir>/text_corpus/sentences")
    parser.add_argument("--spans", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default float32)")
    parser.add_argument("--cache", default=None, help="KV cache of the generate() batches: dynamic or static")
    parser.add_argument("--sizes", default="250,1000,4000", help="corpus sizes (documents) for the memory check")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t2t = args.t2t
        if not t2t:
            t2t = str(tmp / "t2t")
            _random_t2t(Path(t2t))
        if args.run_dir:
            from datasets import load_from_disk

            texts = load_from_disk(str(Path(args.run_dir) / "text_corpus" / "sentences"))["validation"]["text"]
            texts = list(dict.fromkeys(texts))[: args.spans]
        else:
            texts = _sentences(args.spans, 1)
        report = {
            "synthesizer": bench_synthesizer(
                t2t,
                texts,
                args.batch_size,
                args.threads,
                args.dtype,
                None if args.cache in (None, "dynamic") else args.cache,
            )
        }
        print(json.dumps(report["synthesizer"], indent=2), flush=True)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        report["builder"] = bench_builder(t2t, sizes, tmp, args.threads, seed=0) if sizes else []
        if report["builder"]:
            rss = [r["peak_rss_mb"] for r in report["builder"]]
            report["peak_rss_growth_mb"] = round(max(rss) - min(rss), 1)
            report["builder_tokens_per_second"] = report["builder"][-1]["tokens_per_second_wall"]
    report["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "builder"}, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Is bf16 autocast faster than float32 *on this machine*, for each training stage's model, and does `auto` agree?

For the speech tokenizer, the speech decoder and the text-to-token LM at a preset's sizes (`--preset demo`), one
optimiser step (forward, backward, AdamW) is timed in float32 and under `torch.autocast(<device>, bfloat16)`,
alternating the two in one process so that both see the same machine load; the median of `--repeats` steps is
reported. Batches are random but shaped as in training (tokenizer: 16 clips of 10 s; decoder: the preset's batch
of 40-token crops; text-to-token: the preset's batch of 96-token sequences, the tiny world's typical length).

    .venv/bin/python bench/bench_precision.py                      # demo sizes, this machine's threads
    .venv/bin/python bench/bench_precision.py --preset tiny --threads 2 --output runs/bench_precision.json

Prints the CPU model and flags, fp32 and bf16 step times, their ratio, what `bf16: auto` chose and whether that
was the faster one (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modeling_speechtext.hardware import detect_hardware, resolve_bf16  # noqa: E402
from modeling_speechtext.pipeline.presets import load_preset  # noqa: E402

ASR_VOCAB = 300  # the tiny world's text BPE is ~250 tokens; the size barely matters for the step time


def _pick(cfg: dict, cls) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in cfg.items() if k in names}


def speech_tokenizer_step(cfg: dict, device: str):
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel
    from recipes.train_speech_tokenizer import SpeechTokenizerModelArguments

    model_fields = _pick(cfg, SpeechTokenizerModelArguments)
    model_fields.pop("init_from_whisper", None)
    model = SpeechTokenizerModel(SpeechTokenizerConfig(**model_fields, asr_vocab_size=ASR_VOCAB)).to(device)
    g = torch.Generator().manual_seed(0)
    batch, frames = 16, 1000  # 16 clips of 10 s at 100 mel frames/s
    inputs = {
        "input_features": torch.randn(batch, model.config.num_mel_bins, frames, generator=g).to(device),
        "attention_mask": torch.ones(batch, frames, dtype=torch.long, device=device),
        "labels": torch.randint(1, ASR_VOCAB, (batch, 30), generator=g).to(device),
        "quantize": True,
    }
    if model.config.aux_ctc_weight > 0 and model.config.aux_ctc_units == "chars":
        inputs["aux_labels"] = torch.randint(0, len(model.config.aux_char_vocab), (batch, 120), generator=g).to(device)
    return model, inputs, f"{batch} clips x 10 s"


def speech_decoder_step(cfg: dict, device: str):
    from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
    from recipes.train_speech_decoder import ModelArguments

    config = SpeechDecoderConfig(
        codebook_size=512,
        tokens_per_second=12.5,
        voice_names=["a", "b"],
        default_voice="a",
        **_pick(cfg, ModelArguments),
    )
    model = SpeechDecoderModel(config).to(device)
    g = torch.Generator().manual_seed(0)
    batch, tokens = int(cfg.get("per_device_train_batch_size", 16)), int(cfg.get("max_train_tokens", 40))
    fpt = int(round(config.frame_rate / config.tokens_per_second))
    inputs = {
        "input_ids": torch.randint(0, 512, (batch, tokens), generator=g).to(device),
        "attention_mask": torch.ones(batch, tokens, dtype=torch.long, device=device),
        "mel": torch.randn(batch, tokens * fpt, config.n_mels, generator=g).to(device),
        "voice_ids": torch.zeros(batch, dtype=torch.long, device=device),
    }
    return model, inputs, f"{batch} crops x {tokens} tokens"


def text_to_token_step(cfg: dict, device: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    vocab = ASR_VOCAB + 512 + 8  # text + speech tokens + markers
    config = AutoConfig.for_model(
        cfg.get("model_type", "llama"),
        vocab_size=vocab,
        hidden_size=cfg.get("hidden_size", 256),
        num_hidden_layers=cfg.get("num_hidden_layers", 4),
        num_attention_heads=cfg.get("num_attention_heads", 4),
        num_key_value_heads=cfg.get("num_key_value_heads") or cfg.get("num_attention_heads", 4),
        intermediate_size=cfg.get("intermediate_size", 768),
        max_position_embeddings=cfg.get("max_position_embeddings", 512),
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config).to(device)
    g = torch.Generator().manual_seed(0)
    batch, length = int(cfg.get("per_device_train_batch_size", 32)), 96
    ids = torch.randint(0, vocab, (batch, length), generator=g).to(device)
    return model, {"input_ids": ids, "labels": ids}, f"{batch} sequences x {length} tokens"


STAGES = {
    "speech_tokenizer": speech_tokenizer_step,
    "speech_decoder": speech_decoder_step,
    "text_to_token": text_to_token_step,
}


def _step(model, inputs, optimizer, device: str, bf16: bool) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start


def bench_stage(name: str, cfg: dict, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model, inputs, shape = STAGES[name](cfg, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16 in (False, True):  # warm-up: allocator, oneDNN kernels for both dtypes
        _step(model, inputs, optimizer, device, bf16)
    for i in range(repeats):
        for bf16 in (False, True) if i % 2 == 0 else (True, False):  # alternate the order: no drift bias
            times[bf16].append(_step(model, inputs, optimizer, device, bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    return {
        "batch": shape,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "fp32_step_s": round(fp32, 4),
        "bf16_step_s": round(bf16, 4),
        "bf16_speedup": round(fp32 / bf16, 3),  # > 1: bf16 faster
        "faster": "bf16" if bf16 < fp32 else "float32",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    hw = detect_hardware()
    decision = resolve_bf16("auto", use_cpu=args.device == "cpu")
    report = {
        "cpu_model": hw.cpu_model,
        "cpu_flags": list(hw.cpu_flags),
        "cpu_native_bf16": hw.cpu_native_bf16,
        "gpu": hw.gpu,
        "device": args.device,
        "torch": hw.torch_version,
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "auto_choice": decision.precision,
        "auto_reason": decision.reason,
        "stages": {},
    }
    print(f"{hw.cpu_model} | flags: {' '.join(hw.cpu_flags)} | device {args.device} | {report['threads']} threads")
    print(f"bf16: auto -> {decision.precision} ({decision.reason})")
    print(f"{'stage':18s} {'params':>7s} {'fp32 s/step':>12s} {'bf16 s/step':>12s} {'fp32/bf16':>10s}  faster")
    for name in args.stages:
        r = bench_stage(name, preset[name], args.device, args.repeats)
        report["stages"][name] = r
        print(
            f"{name:18s} {r['parameters_M']:6.2f}M {r['fp32_step_s']:12.3f} {r['bf16_step_s']:12.3f} "
            f"{r['bf16_speedup']:9.2f}x  {r['faster']}   ({r['batch']})"
        )
    agrees = [r["faster"] == decision.precision for r in report["stages"].values()]
    report["auto_picks_the_faster"] = all(agrees)
    print(f"auto picked the faster precision for {sum(agrees)}/{len(agrees)} stages")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0 if all(agrees) else 1


if __name__ == "__main__":
    sys.exit(main())

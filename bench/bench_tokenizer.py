"""Speech tokenizer speed on this CPU. Each question prints a baseline, ours, and the ratio, measured in one run.

1. Overhead of our encoder over transformers' plain `WhisperEncoder` of identical size (the layers up to the
   quantizer, same weights, same fixed-length batch): pooling + masking + VQ must cost little (goal <= 1.15x).
2. Encoding speed in audio-seconds per second: length-bucketed batches at each clip's own length (ours) vs
   Whisper's default of padding every clip to 30 s (baseline).
3. Streaming: a long file encoded block by block (`streaming_encoder`, KV cache) by a block-causal model vs the
   offline encoding: tokens must be identical; speed of both.
4. Training throughput: our settings (fused AdamW, dropout 0, bf16 autocast) vs plain defaults (AdamW, dropout
   0.1, fp32), on the same batch.

    python bench/bench_tokenizer.py                                   # demo-size random model, synthetic clips
    python bench/bench_tokenizer.py --model runs/demo/speech_tokenizer --corpus runs/demo/speech_corpus/dataset

The machine is shared: absolute numbers move with the load, ratios much less. --threads pins the thread count.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEMO = dict(
    d_model=256, encoder_layers=5, quantize_position=3, encoder_attention_heads=4, encoder_ffn_dim=1024,
    codebook_size=512, codebook_dim=64, aux_ctc_weight=0.3,
)  # fmt: skip


def timed(fn, repeats: int = 3) -> float:
    """Best of `repeats` wall times (the least disturbed by other jobs on the machine)."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load_clips(args) -> list:
    import numpy as np

    if args.corpus:
        from datasets import load_from_disk

        split = load_from_disk(args.corpus)[args.split]
        split = split.select(range(min(args.clips, len(split))))
        return [np.asarray(r["audio"]["array"], dtype=np.float32) for r in split]
    rng = np.random.default_rng(0)
    return [
        (0.1 * rng.standard_normal(int(rng.uniform(1.5, 5.0) * 16000))).astype(np.float32) for _ in range(args.clips)
    ]


def load_model(args, **overrides):
    import torch

    from modeling_speechtext.generation.speech_tokenization import build_feature_extractor, load_speech_tokenizer
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    if args.model and not overrides:
        return load_speech_tokenizer(args.model)
    torch.manual_seed(0)
    cfg = SpeechTokenizerConfig(**{**DEMO, **overrides}, asr_vocab_size=512)
    return SpeechTokenizerModel(cfg).eval(), build_feature_extractor(cfg)


def bench_overhead(model, batch: int, seconds: float) -> None:
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = model.config
    mel = int(seconds * 100)
    whisper_cfg = WhisperConfig(
        d_model=cfg.d_model, encoder_layers=cfg.quantize_position, encoder_attention_heads=cfg.encoder_attention_heads,
        encoder_ffn_dim=cfg.encoder_ffn_dim, num_mel_bins=cfg.num_mel_bins, max_source_positions=mel // 2,
    )  # fmt: skip
    whisper = WhisperEncoder(whisper_cfg).eval()
    state = {"conv1.weight": model.conv_stem.conv1.weight, "conv1.bias": model.conv_stem.conv1.bias,
             "conv2.weight": model.conv_stem.conv2.weight, "conv2.bias": model.conv_stem.conv2.bias}  # fmt: skip
    state.update({f"layers.{k}": v for k, v in model.layers.state_dict().items()})
    whisper.load_state_dict(state, strict=False)  # same weights: the two compute the same layers
    feats = torch.randn(batch, cfg.num_mel_bins, mel)
    with torch.no_grad():
        t_whisper = timed(lambda: whisper(feats))
        t_ours = timed(lambda: model.encode(feats))
    audio = batch * seconds
    print(f"[overhead] batch {batch} x {seconds:g} s, {cfg.quantize_position} layers d{cfg.d_model}")
    print(f"  baseline WhisperEncoder (plain transformers): {audio / t_whisper:9.1f} audio-s/s")
    print(f"  ours encode (+ masks, pooling, VQ):           {audio / t_ours:9.1f} audio-s/s")
    print(f"  overhead ratio ours/baseline time: {t_ours / t_whisper:.3f}x  (goal <= 1.15x)")


def bench_encoding(model, fe, clips, batch_size: int) -> None:
    import torch

    from modeling_speechtext.generation.speech_tokenization import encode_waveforms

    audio = sum(len(c) for c in clips) / 16000

    def padded_30s():
        with torch.no_grad():
            for i in range(0, len(clips), batch_size):  # WhisperFeatureExtractor's default: pad to 30 s
                feats = fe(
                    clips[i : i + batch_size],
                    sampling_rate=fe.sampling_rate,
                    padding="max_length",
                    truncation=True,
                    return_tensors="pt",
                )
                model.encode(feats["input_features"].to(model.dtype))

    t_ours = timed(lambda: encode_waveforms(model, fe, clips, batch_size=batch_size), repeats=2)
    t_base = timed(padded_30s, repeats=1)
    print(f"[encode] {len(clips)} clips, {audio:.0f} s of audio, batch {batch_size}, features included")
    print(f"  baseline (every clip padded to 30 s): {audio / t_base:9.1f} audio-s/s")
    print(f"  ours (own length, length buckets):    {audio / t_ours:9.1f} audio-s/s")
    print(f"  speed-up ours/baseline: {t_base / t_ours:.2f}x")


def bench_streaming(args, clips) -> None:
    import numpy as np
    import torch

    from modeling_speechtext.generation.speech_tokenization import extract_features

    if args.causal_model:
        from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

        model, fe = load_speech_tokenizer(args.causal_model)
    else:
        model, fe = load_model(args, causal_conv=True, causal_block_size=200, max_source_positions=3000)
    if not model.config.causal_conv or model.config.causal_block_size is None:
        raise SystemExit(f"{args.causal_model} is not block-causal (causal_conv + causal_block_size)")
    long = np.concatenate(clips)[: int(args.stream_seconds * 16000)]
    feats = torch.from_numpy(extract_features(fe, long))
    chunk = int(args.stream_chunk * 100)  # mel frames per push
    with torch.no_grad():
        t_off = timed(lambda: model.encode(feats[None]), repeats=1)
        offline = model.encode(feats[None])[0][0].tolist()

    def stream():
        s = model.streaming_encoder()
        out = []
        for start in range(0, feats.shape[-1], chunk):
            out += s.push(feats[:, start : start + chunk])
        return out + s.flush()

    t_stream = timed(stream, repeats=1)
    streamed = stream()
    block_s = model.config.causal_block_size / model.config.encoder_frame_rate
    print(f"[streaming] {len(long) / 16000:.1f} s file, pushes of {args.stream_chunk:g} s, blocks of {block_s:g} s")
    print(f"  baseline offline encode:  {len(long) / 16000 / t_off:9.1f} audio-s/s")
    print(f"  ours block by block:      {len(long) / 16000 / t_stream:9.1f} audio-s/s")
    print(f"  ratio stream/offline time: {t_stream / t_off:.2f}x;  tokens identical: {streamed == offline} "
          f"({len(streamed)} tokens)")  # fmt: skip


def bench_training(model, fe, clips, steps: int, batch_clips: int) -> None:
    import torch

    from modeling_speechtext.generation.speech_tokenization import collate_features, extract_features

    x, mask = collate_features([extract_features(fe, c) for c in clips[:batch_clips]])
    labels = torch.randint(0, model.config.asr_vocab_size, (x.shape[0], 8))
    audio = sum(len(c) for c in clips[:batch_clips]) / 16000

    def run(fused: bool, bf16: bool, dropout: float) -> float:
        m = copy.deepcopy(model).train()
        m.config.dropout = m.config.activation_dropout = m.config.attention_dropout = dropout
        for layer in [*m.layers, *m.post_layers]:
            layer.dropout = layer.activation_dropout = layer.self_attn.dropout = dropout
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=fused)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = m(x, mask, labels=labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad()

        return audio / timed(step, repeats=steps)

    base = run(fused=False, bf16=False, dropout=0.1)
    ours = run(fused=True, bf16=True, dropout=0.0)
    print(f"[train] batch of {x.shape[0]} clips ({audio:.0f} s)")
    print(f"  baseline (AdamW, fp32, dropout 0.1):  {base:9.1f} audio-s/s")
    print(f"  ours (fused AdamW, bf16, dropout 0):  {ours:9.1f} audio-s/s")
    print(f"  speed-up ours/baseline: {ours / base:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a trained tokenizer folder (default: a random demo-size model)")
    parser.add_argument("--causal_model", help="a trained block-causal tokenizer for the streaming check")
    parser.add_argument("--corpus", help="a speech_corpus dataset folder (default: synthetic clips)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--train_steps", type=int, default=3)
    parser.add_argument("--stream_seconds", type=float, default=45.0)
    parser.add_argument("--stream_chunk", type=float, default=0.5, help="seconds of features per push")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="+", choices=["overhead", "encode", "streaming", "train"])
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, fe = load_model(args)
    clips = load_clips(args)
    cfg = model.config
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, {cfg.frame_rate:g} Hz, "
          f"{cfg.codebook_size} codes, {cfg.bitrate:.0f} bit/s; torch threads {torch.get_num_threads()}")  # fmt: skip
    todo = args.only or ["overhead", "encode", "streaming", "train"]
    if "overhead" in todo:
        bench_overhead(model, batch=8, seconds=10.0)
    if "encode" in todo:
        bench_encoding(model, fe, clips, args.batch_size)
    if "streaming" in todo:
        bench_streaming(args, clips)
    if "train" in todo:
        bench_training(model, fe, clips, args.train_steps, args.batch_size)


if __name__ == "__main__":
    main()

"""Streaming vs offline speech decoding on this CPU: time to first audio, real-time factor, fidelity.

Baseline = offline `decode` of the whole token sequence (first audio only when everything is done); ours =
`decode_stream` fed the same tokens (first audio after `first_chunk_tokens`). Also reports how far the
streamed audio is from the offline one (mel identical by construction; audio through the chunked vocoder)
and the click measure at chunk borders.

    python bench/bench_decoder.py --decoder runs/demo/speech_decoder --run_dir runs/demo
    python bench/bench_decoder.py                      # a randomly initialised demo-size decoder, random tokens
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def load_tokens(run_dir: Path | None, seconds: float, codebook_size: int, seed: int) -> list[int]:
    """Validation utterances' tokens concatenated up to `seconds` of speech (random ids without a run folder)."""
    n = int(seconds * 12.5)
    if run_dir is None or not (run_dir / "speech_tokens" / "dataset").exists():
        return torch.randint(0, codebook_size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    from datasets import load_from_disk

    ids: list[int] = []
    for row in load_from_disk(str(run_dir / "speech_tokens" / "dataset"))["validation"]:
        ids.extend(row["speech_ids"])
        if len(ids) >= n:
            break
    return ids[:n]


def load_decoder(path: str | None):
    from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    if path and (Path(path) / "config.json").is_file():
        return SpeechDecoderModel.from_pretrained(path).eval(), path
    torch.manual_seed(0)
    config = SpeechDecoderConfig(codebook_size=1024, hidden_size=128, encoder_layers=2, estimator_layers=4,
                                 intermediate_size=512)  # fmt: skip
    return SpeechDecoderModel(config).eval(), "random-init demo size"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default=None, help="a trained decoder folder (default: random init)")
    parser.add_argument("--run_dir", default=None, help="take validation tokens from <run_dir>/speech_tokens")
    parser.add_argument("--seconds", type=float, default=20.0, help="speech to decode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="best of N (the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from modeling_speechtext.evaluation.speech_decoder import border_discontinuity, mel_l1

    decoder, source = load_decoder(args.decoder)
    run_dir = Path(args.run_dir) if args.run_dir else None
    ids = load_tokens(run_dir, args.seconds, decoder.config.codebook_size, args.seed)
    duration = len(ids) * decoder.config.samples_per_token / decoder.config.sampling_rate
    decoder.decode(ids[:20])  # warm-up

    offline_times, stream_first, stream_total = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        offline = decoder.decode(ids, seed=args.seed)
        offline_times.append(time.perf_counter() - start)
        start, first, chunks = time.perf_counter(), None, []
        for audio, mel in decoder.decode_stream(ids, seed=args.seed, return_mel=True):
            first = first if first is not None else time.perf_counter() - start
            chunks.append((audio, mel))
        stream_total.append(time.perf_counter() - start)
        stream_first.append(first)

    offline_mel = decoder.generate_mel(ids, seed=args.seed).mel[0]
    streamed = torch.cat([a for a, _ in chunks])
    borders = torch.cumsum(torch.tensor([a.shape[0] for a, _ in chunks[:-1]]), 0).tolist()
    mel_of = decoder.mel_extractor
    numbers = {
        "decoder": source,
        "parameters": decoder.num_parameters(),
        "tokens": len(ids),
        "audio_seconds": round(duration, 2),
        "num_steps": decoder.config.num_steps,
        "cfg_strength": decoder.config.cfg_strength,
        "threads": args.threads,
        "chunk_sizes_tokens": [decoder.config.first_chunk_tokens, *decoder.config.chunk_tokens][: len(chunks)],
        "offline_seconds": round(min(offline_times), 3),
        "offline_time_to_first_audio": round(min(offline_times), 3),
        "offline_rtf": round(min(offline_times) / duration, 4),
        "stream_time_to_first_audio": round(min(stream_first), 3),
        "stream_seconds": round(min(stream_total), 3),
        "stream_rtf": round(min(stream_total) / duration, 4),
        "stream_chunks": len(chunks),
        "stream_vs_offline_mel_max_abs_diff": float((torch.cat([m for _, m in chunks]) - offline_mel).abs().max()),
        "stream_vs_offline_audio_mel_l1": round(mel_l1(mel_of(streamed).T, mel_of(offline).T), 4),
        "offline_audio_vs_decoded_mel_l1": round(mel_l1(mel_of(offline).T, offline_mel), 4),
        "stream_border_jump": round(border_discontinuity(streamed, borders), 3),
        "offline_jump_at_same_samples": round(border_discontinuity(offline, borders), 3),
    }
    print(json.dumps(numbers, indent=2))
    print(
        f"\ntime to first audio: offline {numbers['offline_time_to_first_audio']:.3f}s, streaming "
        f"{numbers['stream_time_to_first_audio']:.3f}s -> {min(offline_times) / min(stream_first):.1f}x sooner"
    )
    print(
        f"real-time factor: offline {numbers['offline_rtf']:.3f}, streaming {numbers['stream_rtf']:.3f} -> "
        f"streaming costs {min(stream_total) / min(offline_times):.2f}x the offline compute"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()

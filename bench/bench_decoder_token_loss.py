"""Cost of the decoder's token-consistency loss: training-step time with and without it, side by side.

Baseline = a decoder training step (forward, flow-matching loss, backward, AdamW); ours = the same step plus the
frozen tokenizer reading the mel estimate (`--token_loss_weight > 0` in recipes/train_speech_decoder.py). Both
run alternately in one process on the same batches, so machine noise hits them alike; the ratio is reported.

    python bench/bench_decoder_token_loss.py --tokenizer runs/tiny/speech_tokenizer --threads 1
    python bench/bench_decoder_token_loss.py           # a randomly initialised tokenizer of the preset's size
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _preset_config(config_class, preset: str, stage: str, **extra):
    """`config_class` built from the preset's YAML for `stage` (keys the config does not know are skipped)."""
    from modeling_speechtext.pipeline.presets import load_preset

    known = config_class().to_dict().keys()
    return config_class(**{k: v for k, v in load_preset(preset)[stage].items() if k in known}, **extra)


def _tokenizer(path: str | None, preset: str):
    """The trained tokenizer at `path`, or a random one of the preset's size (only its cost is measured)."""
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    if path:
        from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

        return load_speech_tokenizer(path)[0]
    return SpeechTokenizerModel(_preset_config(SpeechTokenizerConfig, preset, "speech_tokenizer")).eval()


def _decoder(codebook_size: int, preset: str):
    from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    config = _preset_config(SpeechDecoderConfig, preset, "speech_decoder", codebook_size=codebook_size)
    return SpeechDecoderModel(config).train()


def main(argv: list[str] | None = None) -> dict:
    from modeling_speechtext.training.token_consistency_loss import TokenConsistencyLoss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="trained speech tokenizer folder (default: random)")
    parser.add_argument("--preset", default="tiny", help="decoder (and random tokenizer) sizes from this preset")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tokenizer = _tokenizer(args.tokenizer, args.preset)
    decoder = _decoder(tokenizer.config.codebook_size, args.preset)
    bridge = torch.cat([torch.eye(80) * 0.4, torch.full((1, 80), 1.0)])  # roughly log-mel -> Whisper scale
    loss_fn = TokenConsistencyLoss(tokenizer, bridge)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=1e-4)
    ids = torch.randint(0, tokenizer.config.codebook_size, (args.batch_size, args.tokens))
    mel = torch.randn(args.batch_size, args.tokens * decoder.config.frames_per_token, 80) * 2.5 - 5

    def step(with_token_loss: bool) -> float:
        start = time.perf_counter()
        out = decoder(ids, mel=mel)
        loss = out.loss
        if with_token_loss:
            loss = loss + 0.1 * loss_fn(decoder.denormalize_mel(out.mel_estimate), ids, None, out.estimate_weight).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    step(False), step(True)  # warm-up
    times: dict[str, list[float]] = {"baseline": [], "token_loss": []}
    for _ in range(args.steps):
        times["baseline"].append(step(False))
        times["token_loss"].append(step(True))
    base, ours = statistics.median(times["baseline"]), statistics.median(times["token_loss"])
    result = {
        "threads": args.threads,
        "batch": f"{args.batch_size} x {args.tokens} tokens",
        "decoder_params": decoder.num_parameters(),
        "tokenizer_params": sum(p.numel() for p in tokenizer.parameters()),
        "seconds_per_step_baseline": round(base, 4),
        "seconds_per_step_token_loss": round(ours, 4),
        "slowdown": round(ours / base, 3),
    }
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

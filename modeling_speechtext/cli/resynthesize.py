"""`speechtext resynthesize --tokenizer DIR --decoder DIR IN.wav OUT.wav`: audio -> speech tokens -> audio.

What the paper's reconstruction WER measures, for one file: hear what survives the 12.5 Hz tokens and the
decoder. `--stream` decodes chunk by chunk as a live reply would (same audio, reported latency).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="speech tokenizer folder (the speech_tokenizer stage)")
    parser.add_argument("--decoder", required=True, help="speech decoder folder (the speech_decoder stage)")
    parser.add_argument("input", help="audio file (any format soundfile/FFmpeg reads; resampled to 16 kHz)")
    parser.add_argument("output", help="output .wav")
    parser.add_argument("--voice", help="output voice of a multi-voice decoder (default: its target voice)")
    parser.add_argument("--num_steps", type=int, help="Euler steps (default: the decoder's config)")
    parser.add_argument("--cfg_strength", type=float, help="classifier-free guidance weight (default: config)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", action="store_true", help="decode in streaming chunks")
    parser.add_argument("--transcribe", action="store_true", help="print the tokenizer's ASR of input and output")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import soundfile as sf
    import torch

    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms, load_speech_tokenizer
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    decoder_dir = Path(args.decoder)
    if not (decoder_dir / "config.json").is_file():
        raise FileNotFoundError(f"{decoder_dir} is not a speech decoder folder (no config.json)")
    tokenizer, feature_extractor = load_speech_tokenizer(args.tokenizer)
    decoder = SpeechDecoderModel.from_pretrained(decoder_dir).eval()
    decoder.check_speech_tokenizer(tokenizer)  # codebook size and token rate (and codes) must agree

    wave = load_audio(args.input, feature_extractor.sampling_rate)
    ids = encode_waveforms(tokenizer, feature_extractor, [wave])[0]
    options = dict(voice=args.voice, num_steps=args.num_steps, cfg_strength=args.cfg_strength, seed=args.seed)
    start = time.perf_counter()
    if args.stream:
        chunks, first = [], None
        for chunk in decoder.decode_stream(ids, codebook_size=tokenizer.config.codebook_size, **options):
            first = first if first is not None else time.perf_counter() - start
            chunks.append(chunk)
        audio = torch.cat(chunks)
    else:
        audio = decoder.decode(ids, codebook_size=tokenizer.config.codebook_size, **options)
    seconds = time.perf_counter() - start
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), audio.clamp(-1, 1).numpy(), decoder.config.sampling_rate, subtype="PCM_16")
    duration = audio.shape[0] / decoder.config.sampling_rate
    latency = f", first audio after {first:.3f}s" if args.stream else ""
    print(f"{args.input}: {len(wave) / 16000:.2f}s -> {len(ids)} tokens -> {out} ({duration:.2f}s)")
    print(f"decode {seconds:.2f}s (real-time factor {seconds / max(duration, 1e-9):.3f}{latency})")
    if args.transcribe:
        before = tokenizer.transcribe_tokens([ids])[0]
        after = tokenizer.transcribe_tokens(encode_waveforms(tokenizer, feature_extractor, [audio.numpy()]))[0]
        print(f"input  says: {before}\noutput says: {after}")
    return 0


__all__ = ["add_arguments", "run"]

"""`speechtext transcribe`: audio -> speech tokens -> text, through the tokenizer's ASR head; WER on a manifest.

    speechtext transcribe --tokenizer runs/demo/speech_tokenizer a.wav b.flac
    speechtext transcribe --tokenizer runs/demo/speech_tokenizer --manifest test.jsonl --output preds.jsonl

A manifest has one JSON object per line, `{"audio": path relative to the manifest, "text": reference}`; then WER
and CER (jiwer, on `normalize_text`), codebook usage (fraction of codes used, perplexity), tokens per second
and bitrate are printed. The text is read from the speech tokens, so it shows what the tokens carry.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="*", help="audio files (wav, flac, mp3, ...; any rate; down-mixed to mono)")
    parser.add_argument("--tokenizer", "--model", dest="tokenizer", required=True, help="speech tokenizer folder")
    parser.add_argument("--manifest", help='JSONL: {"audio": path relative to the manifest, "text": reference}')
    parser.add_argument("--output", help="write one JSON line per input: audio, ref, hyp, tokens")
    parser.add_argument("--tokens", action="store_true", help="print the speech token ids too")
    parser.add_argument("--batch_size", type=int, default=16)


def read_manifest(path: str) -> tuple[list[str], list[str], list[str]]:
    """-> (names as written, resolved paths, reference texts); errors name the file and line."""
    import json
    from pathlib import Path

    manifest = Path(path)
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such manifest")
    names, paths, texts = [], [], []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{manifest}:{number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("audio"), str):
            raise ValueError(f'{manifest}:{number}: needs an "audio" path (and a "text" reference)')
        names.append(record["audio"])
        paths.append(str(manifest.parent / record["audio"]))
        texts.append(str(record.get("text", "")))
    if not names:
        raise ValueError(f"{manifest}: empty manifest")
    return names, paths, texts


def run(args: argparse.Namespace) -> int:
    import json

    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.evaluation.speech_tokenizer import codebook_stats
    from modeling_speechtext.evaluation.wer import error_rates
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms, load_speech_tokenizer
    from modeling_speechtext.text_normalization import normalize_text

    if not args.audio and not args.manifest:
        raise ValueError("give audio files or --manifest FILE.jsonl")
    names, paths, refs = list(args.audio), list(args.audio), [None] * len(args.audio)
    if args.manifest:
        m_names, m_paths, m_refs = read_manifest(args.manifest)
        names, paths, refs = names + m_names, paths + m_paths, refs + m_refs
    model, feature_extractor = load_speech_tokenizer(args.tokenizer)
    waves = [load_audio(p, feature_extractor.sampling_rate) for p in paths]
    ids = encode_waveforms(model, feature_extractor, waves, batch_size=args.batch_size)
    hyps = model.transcribe_tokens(ids)
    records = [{"audio": n, "ref": r, "hyp": h, "tokens": t} for n, r, h, t in zip(names, refs, hyps, ids)]
    for rec in records:
        print(f"{rec['audio']}\t{rec['hyp']}")
        if args.tokens:
            print(" ".join(map(str, rec["tokens"])))
    if args.output:
        with open(args.output, "w") as f:
            f.writelines(json.dumps(rec) + "\n" for rec in records)
    scored = [(r["ref"], r["hyp"]) for r in records if normalize_text(r["ref"] or "")]
    if scored:
        rates = error_rates([r for r, _ in scored], [h for _, h in scored])
        usage = codebook_stats(ids, model.config.codebook_size)
        seconds = sum(len(w) for w in waves) / feature_extractor.sampling_rate
        print(
            f"WER {rates['wer']:.2%}  CER {rates['cer']:.2%}  ({len(scored)} utterances)\n"
            f"codebook usage {usage['codebook_usage']:.1%} ({usage['codes_used']}/{model.config.codebook_size} codes),"
            f" perplexity {usage['perplexity']:.1f}\n"
            f"tokens/s {usage['num_tokens'] / seconds:.2f}  bitrate {model.config.bitrate:.0f} bit/s"
            f" ({model.config.frame_rate:g} Hz x {model.config.codebook_size} codes)"
        )
    return 0


__all__ = ["add_arguments", "read_manifest", "run"]

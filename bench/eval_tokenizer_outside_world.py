"""How does a tiny-world speech tokenizer do outside its world: real recordings and open-vocabulary speech.

Issue 3 asks for these numbers next to the in-world ones, reported honestly and not tuned to. Three manifests:
- `vctk_p239`: 503 real read sentences of one VCTK speaker (16 kHz), open vocabulary;
- `fsdd`: 3,000 real recordings of the digits 0-9 (8 kHz, resampled), words outside the tiny world;
- `gutenberg`: Gutenberg sentences (open vocabulary) spoken by eSpeak NG voices that no preset trains on,
  written once to `--work_dir` as FLAC + a manifest.

Every manifest goes through `speechtext transcribe`'s own code path (audio -> tokens -> ASR head).

    .venv/bin/python bench/eval_tokenizer_outside_world.py --tokenizer runs/tiny/speech_tokenizer \
        --output runs/tiny/speech_tokenizer/outside_world.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# eSpeak NG accent+variant pairs used by no preset's train or test voices (recipes/configs/*/speech_corpus.yaml)
HELD_OUT_ESPEAK = ["espeak:en-us+klatt2", "espeak:en-gb-x-rp+klatt3", "espeak:en+max", "espeak:en-us-nyc+robert"]


def gutenberg_manifest(work_dir: Path, n: int, seed: int) -> Path:
    """`n` clean Gutenberg sentences (6-14 words) from the shared books, spoken by held-out eSpeak voices."""
    import soundfile as sf

    from dataset_builders.text_corpus import clean_sentence, read_text_items, split_sentences
    from dataset_builders.tts_engines import get_engine, parse_voice
    from modeling_speechtext.audio import prepare_audio
    from modeling_speechtext.paths import resolve_data_path

    manifest = work_dir / "gutenberg.jsonl"
    if manifest.is_file():
        return manifest
    books = sorted(resolve_data_path("text/gutenberg").glob("*.txt"))
    if not books:
        raise FileNotFoundError("no Gutenberg books under the shared data folder (text/gutenberg/*.txt)")
    sentences = []
    for book in books:
        items, _ = read_text_items(book)
        sentences += [s for item in items for s in map(lambda x: clean_sentence(x, 6, 14), split_sentences(item)) if s]
    rng = random.Random(seed)
    picked = rng.sample(sentences, min(n, len(sentences)))
    work_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, text in enumerate(picked):
        voice = parse_voice(HELD_OUT_ESPEAK[i % len(HELD_OUT_ESPEAK)])
        wave, rate = get_engine(voice.engine).synthesize(text, voice.voice)
        name = f"gutenberg_{i:04d}.flac"
        sf.write(work_dir / name, prepare_audio(wave, rate, 16000, name), 16000)
        lines.append(json.dumps({"audio": name, "text": text, "voice": str(voice)}))
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def score_manifest(model, feature_extractor, manifest: Path, limit: int | None) -> dict:
    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.cli.transcribe import read_manifest
    from modeling_speechtext.evaluation.speech_tokenizer import codebook_stats
    from modeling_speechtext.evaluation.wer import error_rates
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms

    _, paths, refs = read_manifest(str(manifest))
    paths, refs = paths[:limit], refs[:limit]
    waves = [load_audio(p, feature_extractor.sampling_rate) for p in paths]
    ids = encode_waveforms(model, feature_extractor, waves, batch_size=32)
    hyps = model.transcribe_tokens(ids)
    usage = codebook_stats(ids, model.config.codebook_size)
    return {
        **{k: round(v, 4) for k, v in error_rates(refs, hyps).items()},
        "utterances": len(refs),
        "codebook_usage": round(usage["codebook_usage"], 4),
        "perplexity": round(usage["perplexity"], 1),
        "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, hyps))[:3]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--work_dir", default="runs/outside_world", help="where the Gutenberg speech is written")
    parser.add_argument("--gutenberg_sentences", type=int, default=200)
    parser.add_argument("--limit", type=int, default=None, help="at most this many utterances per manifest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output")
    args = parser.parse_args()

    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer
    from modeling_speechtext.paths import resolve_data_path

    model, feature_extractor = load_speech_tokenizer(args.tokenizer)
    manifests = {
        "vctk_p239": resolve_data_path("speech/vctk_p239/metadata.jsonl"),
        "fsdd": resolve_data_path("speech/fsdd/metadata.jsonl"),
        "gutenberg_heldout_espeak": gutenberg_manifest(Path(args.work_dir), args.gutenberg_sentences, args.seed),
    }
    report = {name: score_manifest(model, feature_extractor, path, args.limit) for name, path in manifests.items()}
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Stage `speech_tokens`: every split of the speech corpus encoded with the trained speech tokenizer.

Output (docs/STAGES.md): `dataset/` (a `DatasetDict` with the corpus splits; columns `id`, `text`, `voice`,
`engine`, `duration`, `speech_ids: Sequence(int32)`) and `stats.json` (tokens per second, codebook usage per
split, encoding speed). The audio stays in `speech_corpus/` (join on `id`). The speech decoder trains on these
ids, the text-to-token model learns text -> these ids.

Work is done in chunks of `chunk_clips` clips (bounded memory: only one chunk's audio is decoded at a time) and
each finished split is saved under `parts/` first, so a crash resumes at the first unfinished split.

Stage config (`recipes/configs/<preset>/speech_tokens.yaml`)::

    batch_size: 32          # clips per forward pass (length-bucketed, no 30 s padding)
    max_batch_frames: 48000 # cap on clips x mel frames per batch (memory)
    chunk_clips: 2000       # clips decoded at once
    splits: null            # default: every split of the corpus
    tokenizer_path: null    # default: <run_dir>/speech_tokenizer
    corpus_path: null       # default: <run_dir>/speech_corpus/dataset
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STAGE_KEYS = {
    "batch_size",
    "max_batch_frames",
    "chunk_clips",
    "splits",
    "tokenizer_path",
    "corpus_path",
    "num_threads",
    "seed",
}
COLUMNS = ("id", "text", "voice", "engine", "duration")


def token_features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "voice": Value("string"),
            "engine": Value("string"),
            "duration": Value("float32"),
            "speech_ids": Sequence(Value("int32")),
        }
    )


def _decode(cell: dict, name: str):
    """An undecoded Audio cell -> float32 mono 16 kHz, through the project's one audio loader."""
    from modeling_speechtext.audio import load_audio

    source = cell.get("bytes") or cell.get("path")
    if source is None:
        raise ValueError(f"{name}: audio cell has neither bytes nor path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipping / near-silence warnings: real data, reported by speech_corpus
        return load_audio(source, name=name)


def encode_split(model, feature_extractor, split, batch_size: int, max_batch_frames: int | None, chunk_clips: int):
    """One corpus split -> (rows for the tokens dataset, seconds spent in the encoder)."""
    from datasets import Audio
    from tqdm.auto import tqdm

    from modeling_speechtext.generation.speech_tokenization import encode_waveforms

    missing = [c for c in ("id", "audio", "text") if c not in split.column_names]
    if missing:
        raise ValueError(f"speech corpus split lacks column(s) {missing} (has {split.column_names})")
    raw = split.cast_column("audio", Audio(decode=False))
    rows: dict[str, list] = {c: [] for c in (*COLUMNS, "speech_ids")}
    seconds = 0.0
    for start in tqdm(range(0, len(raw), chunk_clips), desc="speech_tokens", mininterval=10):
        chunk = raw.select(range(start, min(start + chunk_clips, len(raw))))
        waves = [_decode(r["audio"], str(r["id"])) for r in chunk]
        t0 = time.perf_counter()
        ids = encode_waveforms(
            model, feature_extractor, waves, batch_size=batch_size, max_batch_frames=max_batch_frames
        )
        seconds += time.perf_counter() - t0
        for r, w, t in zip(chunk, waves, ids):
            rows["id"].append(str(r["id"]))
            rows["text"].append(r["text"])
            rows["voice"].append(str(r.get("voice", "")))
            rows["engine"].append(str(r.get("engine", "")))
            rows["duration"].append(float(r["duration"]) if r.get("duration") is not None else len(w) / 16000)
            rows["speech_ids"].append(t)
    return rows, seconds


def split_stats(rows: dict[str, list], encode_seconds: float, codebook_size: int) -> dict[str, Any]:
    from modeling_speechtext.evaluation.speech_tokenizer import codebook_stats

    audio = sum(rows["duration"])
    stats = codebook_stats(rows["speech_ids"], codebook_size)
    stats.pop("counts")
    return {
        "clips": len(rows["id"]),
        "audio_hours": round(audio / 3600, 4),
        "tokens": stats.pop("num_tokens"),
        "tokens_per_second": sum(map(len, rows["speech_ids"])) / max(audio, 1e-9),
        "encode_audio_seconds_per_second": audio / max(encode_seconds, 1e-9),
        **stats,
    }


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    import torch
    from datasets import Dataset, DatasetDict, load_from_disk

    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    unknown = sorted(set(config) - _STAGE_KEYS)
    if unknown:
        raise ValueError(f"speech_tokens config: unknown key(s) {unknown}; known: {sorted(_STAGE_KEYS)}")
    if config.get("num_threads"):
        torch.set_num_threads(int(config["num_threads"]))
    output_dir, run_dir = Path(output_dir), Path(run_dir)
    tok_path = Path(config.get("tokenizer_path") or run_dir / "speech_tokenizer")
    corpus_path = Path(config.get("corpus_path") or run_dir / "speech_corpus" / "dataset")
    if not corpus_path.is_dir():
        raise FileNotFoundError(f"speech corpus not found at {corpus_path} (run the speech_corpus stage)")
    model, feature_extractor = load_speech_tokenizer(tok_path)
    corpus = load_from_disk(str(corpus_path))
    splits = config.get("splits") or list(corpus)
    bad = [s for s in splits if s not in corpus]
    if bad:
        raise ValueError(f"speech_tokens: split(s) {bad} not in the corpus (has {list(corpus)})")

    parts = output_dir / "parts"
    stats: dict[str, Any] = {
        "tokenizer": str(tok_path),
        "codebook_size": model.config.codebook_size,
        "frame_rate": model.config.frame_rate,
        "splits": {},
    }
    for name in splits:
        part = parts / name
        if (part / "stats.json").is_file():
            stats["splits"][name] = json.loads((part / "stats.json").read_text())
            logger.info("speech_tokens: split %s already encoded, reused", name)
            continue
        rows, seconds = encode_split(
            model,
            feature_extractor,
            corpus[name],
            int(config.get("batch_size", 32)),
            config.get("max_batch_frames"),
            int(config.get("chunk_clips", 2000)),
        )
        tmp = parts / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        Dataset.from_dict(rows, features=token_features()).save_to_disk(str(tmp))
        split_stat = split_stats(rows, seconds, model.config.codebook_size)
        (tmp / "stats.json").write_text(json.dumps(split_stat, indent=2))
        shutil.rmtree(part, ignore_errors=True)
        tmp.rename(part)
        stats["splits"][name] = split_stat
        logger.info("speech_tokens: %s %s", name, json.dumps({k: v for k, v in split_stat.items()}))

    dataset = DatasetDict({name: load_from_disk(str(parts / name)) for name in splits})
    target = output_dir / "dataset"
    shutil.rmtree(target, ignore_errors=True)
    dataset.save_to_disk(str(target))
    shutil.rmtree(parts, ignore_errors=True)
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    summary = {"codebook_size": stats["codebook_size"], "frame_rate": stats["frame_rate"]}
    for name, s in stats["splits"].items():
        for key in ("clips", "tokens", "tokens_per_second", "codebook_usage", "perplexity"):
            summary[f"{name}_{key}"] = round(s[key], 4) if isinstance(s[key], float) else s[key]
    return summary


__all__ = ["token_features", "encode_split", "split_stats", "run_stage"]

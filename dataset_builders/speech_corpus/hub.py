"""Real speech instead of synthesis: a Hub corpus (LibriSpeech, MLS, ...) mapped to the corpus columns, what the
`paper` preset uses. The unseen-voice split drops every speaker of the train split."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .config import OUTPUT_SPLITS, corpus_features


def hub_to_corpus(
    ds,
    *,
    split: str,
    dataset_name: str,
    text_column: str = "text",
    speaker_column: str | None = "speaker_id",
    id_column: str | None = "id",
    audio_column: str = "audio",
    engine: str = "human",
    exclude_voices: set[str] | None = None,
    max_utterances: int | None = None,
    cache_dir: str | None = None,
):
    """Map a Hub speech dataset (Dataset or streaming IterableDataset) to this corpus's columns.

    Audio is kept in its original encoding and declared `Audio(sampling_rate=16000)`, so `datasets` resamples
    on decode (re-encoding hours of FLAC here would buy nothing). `voice` = `hub:<dataset>:<speaker>`;
    `exclude_voices` drops rows of those voices (train speakers, for the unseen-voice split).
    """
    import soundfile as sf
    from datasets import Audio, Dataset

    for col in (audio_column, text_column):
        if col not in (ds.column_names or [col]):
            raise ValueError(
                f"hub dataset {dataset_name!r} split {split!r} has no column {col!r} (columns: {ds.column_names})"
            )
    ds = ds.cast_column(audio_column, Audio(decode=False))
    prefix = f"hub:{dataset_name}"
    features = corpus_features()

    def rows():
        n = 0
        for i, ex in enumerate(ds):
            if max_utterances is not None and n >= max_utterances:
                return
            speaker = ex.get(speaker_column) if speaker_column else None
            voice = f"{prefix}:{speaker}" if speaker is not None else prefix
            if exclude_voices and voice in exclude_voices:
                continue
            audio = ex[audio_column]
            data = audio.get("bytes")
            info = sf.info(io.BytesIO(data)) if data else sf.info(audio["path"])
            ident = ex.get(id_column) if id_column else None
            yield {
                "id": str(ident) if ident is not None else f"{split}-{i:08d}",
                "audio": {"bytes": data, "path": audio.get("path")},
                "text": ex[text_column],
                "voice": voice,
                "engine": engine,
                "duration": float(info.frames / info.samplerate),
            }
            n += 1

    # from_generator writes Arrow to disk as it goes: a Hub corpus need not fit in memory.
    return Dataset.from_generator(rows, features=features, cache_dir=cache_dir)


def load_hub_corpus(hub: Mapping[str, Any], output_dir: str | Path):
    """`hub_dataset` config -> DatasetDict with the corpus columns, test_unseen_voices minus training speakers.

    Keys: `name` (e.g. `openslr/librispeech_asr`), `config` (optional), `splits` ({output split: Hub split}),
    `text_column`, `speaker_column`, `id_column`, `streaming` (default true), `max_utterances` ({split: n}).
    """
    from datasets import DatasetDict, load_dataset

    name = hub.get("name")
    if not name:
        raise ValueError("speech_corpus config: hub_dataset.name is required (e.g. openslr/librispeech_asr)")
    split_map = hub.get("splits") or {}
    missing = [s for s in OUTPUT_SPLITS if s not in split_map]
    if missing:
        raise ValueError(f"speech_corpus config: hub_dataset.splits must map {list(OUTPUT_SPLITS)}; missing {missing}")
    out, train_voices = {}, set()
    for split in OUTPUT_SPLITS:
        raw = load_dataset(name, hub.get("config"), split=split_map[split], streaming=bool(hub.get("streaming", True)))
        out[split] = hub_to_corpus(
            raw,
            split=split,
            dataset_name=name,
            text_column=hub.get("text_column", "text"),
            speaker_column=hub.get("speaker_column", "speaker_id"),
            id_column=hub.get("id_column", "id"),
            engine=hub.get("engine", "human"),
            exclude_voices=train_voices if split == "test_unseen_voices" else None,
            max_utterances=(hub.get("max_utterances") or {}).get(split),
            cache_dir=str(Path(output_dir) / "cache"),
        )
        if split == "train":
            train_voices = set(out[split]["voice"])
    return DatasetDict(out)


def save_hub_corpus(hub: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """The stage for a Hub corpus: `output_dir/dataset` and `stats.json` (hours, voices, engines per split)."""
    dd = load_hub_corpus(hub, output_dir)
    dd.save_to_disk(str(output_dir / "dataset"))
    shutil.rmtree(output_dir / "cache", ignore_errors=True)
    stats = {
        "splits": {
            s: {
                "utterances": len(d),
                "hours": round(float(np.sum(d["duration"])) / 3600, 4),
                "num_voices": len(set(d["voice"])),
            }
            for s, d in dd.items()
        },
        "engines": sorted({e for d in dd.values() for e in set(d["engine"])}),
        "hub_dataset": hub["name"],
    }
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    return stats


__all__ = ["hub_to_corpus", "load_hub_corpus", "save_hub_corpus"]

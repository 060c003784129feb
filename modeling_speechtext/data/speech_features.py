"""Data side of speech tokenizer training and evaluation: cached log-mel features, ASR labels, length buckets.

Log-mel features are computed once per corpus split and cached as one safetensors file (float16 frames +
offsets): the training loop then never touches audio decoding or STFTs, which would otherwise cost as much as
the model itself at this size. Batches are cut from length-sorted clips under a frame budget, so padding stays
small and a batch's cost is predictable.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_speechtext.text_normalization import clean_text, normalize_text

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
LABEL_MODES = ("cased", "normalized")
_PUNCT_RE = re.compile(r"[^\w\s]")


def label_text(text: str, mode: str = "cased") -> str:
    """The ASR target for `text`.

    `normalized` is the scoring form (lowercase, no punctuation). `cased` keeps case but drops punctuation like
    the scoring form: with a BPE trained on cased corpus text, `Mary` is one token while `mary` is three, and one
    token per word is what CTC at 12.5 Hz learns fastest. Both score identically through `normalize_text`.
    """
    if mode == "normalized":
        return normalize_text(text)
    if mode == "cased":
        return " ".join(_PUNCT_RE.sub(" ", clean_text(text).replace("'", "").replace("\u2019", "")).split())
    raise ValueError(f"label_text must be one of {LABEL_MODES}, got {mode!r}")


@dataclass
class FeatureSet:
    """Cached features of one corpus split: `frames(i)` is clip i's `[n_mels, T_i]` float32 log-mel."""

    features: torch.Tensor  # [total_frames, n_mels] float16
    offsets: torch.Tensor  # [n + 1] int64
    ids: list[str]
    texts: list[str]
    voices: list[str]
    durations: list[float]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def frames(self, i: int) -> torch.Tensor:
        return self.features[self.offsets[i] : self.offsets[i + 1]].T.float()

    @property
    def hours(self) -> float:
        return sum(self.durations) / 3600


def _fingerprint(split, feature_extractor, max_clips: int | None) -> str:
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "data": getattr(split, "_fingerprint", None) or str(len(split)),
            "fe": feature_extractor.to_dict(),
            "max": max_clips,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _read_audio(entry: dict, name: str) -> tuple[np.ndarray, int]:
    """An undecoded `Audio` cell (`bytes` or `path`) -> (mono float32, rate)."""
    import soundfile as sf

    source = io.BytesIO(entry["bytes"]) if entry.get("bytes") else entry.get("path")
    if source is None:
        raise ValueError(f"{name}: audio cell has neither bytes nor path")
    array, rate = sf.read(source, dtype="float32", always_2d=True)
    return array.mean(axis=1), int(rate)


def compute_features(split, feature_extractor, max_clips: int | None = None, desc: str = "features") -> FeatureSet:
    """Decode every clip of a `speech_corpus` split (16 kHz `audio` column) and compute its log-mel once."""
    from datasets import Audio

    from modeling_speechtext.generation.speech_tokenization import _check_waveform, extract_features

    if "audio" not in split.column_names or "text" not in split.column_names:
        raise ValueError(f"speech corpus split needs columns audio and text, has {split.column_names}")
    n = len(split) if max_clips is None else min(len(split), max_clips)
    rows = split.select(range(n)).cast_column("audio", Audio(decode=False))  # soundfile is ~20x faster here
    chunks, offsets, meta = [], [0], {"ids": [], "texts": [], "voices": [], "durations": []}
    for i, row in enumerate(tqdm(rows, total=n, desc=desc, mininterval=5)):
        array, rate = _read_audio(row["audio"], f"clip {row.get('id', i)}")
        if rate != feature_extractor.sampling_rate:
            raise ValueError(
                f"clip {row.get('id', i)}: {rate} Hz audio; the corpus must be {feature_extractor.sampling_rate} Hz"
            )
        feats = extract_features(feature_extractor, _check_waveform(i, array))
        chunks.append(torch.from_numpy(feats.T).half())
        offsets.append(offsets[-1] + feats.shape[1])
        meta["ids"].append(str(row.get("id", i)))
        meta["texts"].append(row["text"])
        meta["voices"].append(str(row.get("voice", "")))
        meta["durations"].append(len(array) / rate)
    return FeatureSet(torch.cat(chunks), torch.tensor(offsets, dtype=torch.long), **meta)


def load_or_compute_features(split, feature_extractor, cache_dir: Path, name: str, max_clips: int | None = None):
    """`compute_features`, cached in `cache_dir/<name>-<fingerprint>.safetensors` (+ `.json` for the text)."""
    from safetensors.torch import load_file, save_file

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = cache_dir / f"{name}-{_fingerprint(split, feature_extractor, max_clips)}"
    tensors, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if tensors.is_file() and meta.is_file():
        data = load_file(tensors)
        return FeatureSet(data["features"], data["offsets"], **json.loads(meta.read_text()))
    fs = compute_features(split, feature_extractor, max_clips, desc=f"features {name}")
    save_file({"features": fs.features.contiguous(), "offsets": fs.offsets}, str(tensors) + ".tmp")
    meta.write_text(json.dumps({k: getattr(fs, k) for k in ("ids", "texts", "voices", "durations")}))
    Path(str(tensors) + ".tmp").replace(tensors)  # the .safetensors appears last: present means complete
    return fs


def encode_labels(tokenizer, texts: list[str], mode: str = "cased") -> list[list[int]]:
    """Texts -> subword ids of their ASR targets (no special tokens)."""
    out = []
    for t in texts:
        ids = tokenizer(label_text(t, mode), add_special_tokens=False)["input_ids"]
        out.append([i for i in ids if i not in set(tokenizer.all_special_ids)])
    return out


def encode_char_labels(config, texts: list[str]) -> list[list[int]]:
    """Texts -> ids in `config.aux_char_vocab` of their scoring form: the targets of a `"chars"` auxiliary CTC."""
    index = {c: i for i, c in enumerate(config.aux_char_vocab)}
    return [[index[c] for c in normalize_text(t) if c in index] for t in texts]


def _pad_labels(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(max((len(r) for r in rows), default=0), 1)), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def make_batches(
    lengths: list[int], max_batch_frames: int, max_batch_size: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Training batches of a feature set: `length_buckets` with jitter and shuffled order (`shuffle`), or
    sorted and deterministic for evaluation."""
    from modeling_speechtext.generation.speech_tokenization import length_buckets

    return length_buckets(lengths, max_batch_size, max_batch_frames, seed=seed if shuffle else None)


def collate(fs: FeatureSet, batch: list[int], labels: list[list[int]] | None = None):
    """Indices -> (`input_features [B, n_mels, T]`, `attention_mask [B, T]`, `labels [B, L]` padded with -100)."""
    from modeling_speechtext.generation.speech_tokenization import collate_features

    feats, mask = collate_features([fs.frames(i) for i in batch])
    if labels is None:
        return feats, mask, None
    return feats, mask, _pad_labels([labels[i] for i in batch])


def collate_aux(batch: list[int], aux_labels: list[list[int]] | None) -> torch.Tensor | None:
    """The auxiliary CTC targets of a batch (None when the aux head reuses the main labels)."""
    return None if aux_labels is None else _pad_labels([aux_labels[i] for i in batch])


__all__ = [
    "LABEL_MODES",
    "label_text",
    "FeatureSet",
    "compute_features",
    "load_or_compute_features",
    "encode_labels",
    "encode_char_labels",
    "collate_aux",
    "make_batches",
    "collate",
]

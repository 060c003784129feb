"""Waveforms -> speech token ids with a trained tokenizer: what the later stages call.

Features are computed one clip at a time (no 30 s padding, and a clip's features never depend on the clips it
is batched with), then clips are sorted by length and batched so padding stays small. Clips longer than the
model's window are cut at token boundaries and their tokens concatenated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

MIN_SAMPLES = 400
"""One STFT window (25 ms): shorter clips produce no mel frame."""


def load_speech_tokenizer(path: str | os.PathLike, device: str | torch.device = "cpu", dtype=torch.float32):
    """A saved tokenizer folder -> `(SpeechTokenizerModel in eval mode, WhisperFeatureExtractor)`."""
    from modeling_speechtext.models.speech_tokenizer.feature_extraction_speech_tokenizer import (
        SpeechTokenizerFeatureExtractor,
    )
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a speech tokenizer folder (no config.json)")
    if not (path / "preprocessor_config.json").is_file():
        raise FileNotFoundError(f"{path} has no preprocessor_config.json (the WhisperFeatureExtractor)")
    model = SpeechTokenizerModel.from_pretrained(path, dtype=dtype).to(device).eval()
    feature_extractor = SpeechTokenizerFeatureExtractor.from_pretrained(path)
    if feature_extractor.feature_size != model.config.num_mel_bins:
        raise ValueError(
            f"{path}: feature extractor makes {feature_extractor.feature_size} mel bins, model expects "
            f"{model.config.num_mel_bins}"
        )
    return model, feature_extractor


def build_feature_extractor(config):
    """The feature extractor (a configured `WhisperFeatureExtractor`) matching a `SpeechTokenizerConfig`."""
    from modeling_speechtext.models.speech_tokenizer.feature_extraction_speech_tokenizer import (
        SpeechTokenizerFeatureExtractor,
    )

    return SpeechTokenizerFeatureExtractor(
        feature_size=config.num_mel_bins, sampling_rate=config.sampling_rate, hop_length=config.hop_length
    )


def _check_waveform(index: int, waveform) -> np.ndarray:
    wav = np.asarray(waveform)
    if wav.ndim != 1:
        raise ValueError(f"waveforms[{index}] must be mono 1-D audio, got shape {wav.shape}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise ValueError(f"waveforms[{index}] must be float audio in [-1, 1], got dtype {wav.dtype}")
    if len(wav) < MIN_SAMPLES:
        raise ValueError(f"waveforms[{index}] has {len(wav)} samples; at least {MIN_SAMPLES} (25 ms at 16 kHz) needed")
    if not np.isfinite(wav).all():
        raise ValueError(f"waveforms[{index}] contains NaN or inf")
    return wav.astype(np.float32, copy=False)


def extract_features(feature_extractor, waveform: np.ndarray) -> np.ndarray:
    """One clip -> log-mel `[n_mels, len // hop]` float32, exactly its own length (no padding)."""
    out = feature_extractor(
        waveform,
        sampling_rate=feature_extractor.sampling_rate,
        padding="longest",
        truncation=False,
        return_attention_mask=False,
        return_tensors="np",
    )
    return out["input_features"][0].astype(np.float32, copy=False)


def collate_features(features: list[np.ndarray] | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `[n_mels, T_i]` features -> (`input_features [B, n_mels, T]`, `attention_mask [B, T]`)."""
    longest = max(f.shape[-1] for f in features)
    batch = torch.zeros(len(features), features[0].shape[0], longest)
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    for i, f in enumerate(features):
        batch[i, :, : f.shape[-1]] = torch.as_tensor(f)
        mask[i, : f.shape[-1]] = 1
    return batch, mask


def length_buckets(
    lengths: list[int], batch_size: int, max_batch_frames: int | None = None, seed: int | None = None
) -> list[list[int]]:
    """The one length bucketer (inference and training): indices sorted by length and cut greedily into
    batches of at most `batch_size` items and `max_batch_frames` padded frames (longest x count).

    With a `seed` (training) the sort key gets +-10% jitter, so batches differ between epochs, and the batch
    order is shuffled; without one (inference) the result is deterministic and sorted.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    jitter = rng.uniform(0.9, 1.1, len(lengths)) if rng is not None else np.ones(len(lengths))
    order = np.argsort(np.asarray(lengths, dtype=np.float64) * jitter, kind="stable")
    limit = max_batch_frames or float("inf")
    batches, current, longest = [], [], 0
    for i in order.tolist():
        new_longest = max(longest, lengths[i])
        if current and (len(current) >= batch_size or new_longest * (len(current) + 1) > limit):
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def encode_waveforms(
    model,
    feature_extractor,
    waveforms: list[np.ndarray],
    batch_size: int = 16,
    max_batch_frames: int | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """16 kHz mono float waveforms -> one list of token ids each (in input order).

    Args:
        model: a `SpeechTokenizerModel` (eval mode). feature_extractor: its `WhisperFeatureExtractor`.
        waveforms: 1-D float arrays at the feature extractor's rate (16 kHz); resample first (see `audio.py`).
        batch_size: clips per forward pass; clips are length-sorted first so batches hold similar lengths.
        max_batch_frames: optional cap on `clips x longest mel frames` per batch (memory).
    """
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        raise ValueError("waveforms must be a list of 1-D arrays (got one array; wrap it in a list)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    waves = [_check_waveform(i, w) for i, w in enumerate(waveforms)]
    chunk = model.config.max_source_positions * 2 * model.config.hop_length  # samples per full window
    pieces, owner = [], []
    for i, w in enumerate(waves):
        for start in range(0, len(w), chunk):
            piece = w[start : start + chunk]
            if len(piece) >= MIN_SAMPLES or start == 0:
                pieces.append(piece)
                owner.append(i)
    features = [extract_features(feature_extractor, p) for p in pieces]
    results: list[list[int] | None] = [None] * len(pieces)
    device = next(model.parameters()).device
    batches = length_buckets([f.shape[-1] for f in features], batch_size, max_batch_frames)
    for batch in tqdm(batches, desc="encode", disable=not progress):
        input_features, mask = collate_features([features[i] for i in batch])
        ids, lengths = model.encode(input_features.to(device, model.dtype), mask.to(device))
        for row, n, i in zip(ids.tolist(), lengths.tolist(), batch):
            results[i] = row[:n]
    out: list[list[int]] = [[] for _ in waves]
    for i, ids in zip(owner, results):
        out[i].extend(ids)
    return out


__all__ = [
    "MIN_SAMPLES",
    "load_speech_tokenizer",
    "build_feature_extractor",
    "extract_features",
    "collate_features",
    "length_buckets",
    "encode_waveforms",
]

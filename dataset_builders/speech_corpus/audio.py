"""Engine output -> corpus audio: trim the silences, resample to 16 kHz (with the speed perturbation), peak-normalise,
encode as FLAC. Engines differ by >10 dB and in their lead-in; a model should not learn to tell them apart by that."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from modeling_speechtext.constants import SAMPLE_RATE


@functools.lru_cache(maxsize=256)
def _resampler(orig: int, new: int):
    """torchaudio's sinc `Resample` with its kernel built once per rate pair, with the filter settings of
    `modeling_speechtext.audio.prepare_audio` (so every stage resamples identically), which rebuilds the kernel on
    every call: more time than synthesizing a short eSpeak utterance. Speed perturbation gives only ~20 distinct
    rate pairs per engine rate."""
    import torchaudio

    try:
        from modeling_speechtext.audio import _RESAMPLE_KWARGS as kwargs
    except ImportError:
        kwargs = {}
    g = math.gcd(orig, new)
    return torchaudio.transforms.Resample(orig // g, new // g, **kwargs)


def _resample(audio: np.ndarray, orig_sr: int, target_sr: int, source: str) -> np.ndarray:
    import warnings

    import torch

    try:
        from modeling_speechtext.audio import prepare_audio
    except ImportError:  # the shared audio checks are optional here
        x = np.ascontiguousarray(audio, dtype=np.float32)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # near-silence/clipping are judged after normalisation
            x = prepare_audio(audio, orig_sr, orig_sr, source)  # checks (dtype, NaN, empty), no resampling
    if orig_sr == target_sr:
        return x
    with torch.no_grad():
        return _resampler(orig_sr, target_sr)(torch.from_numpy(x)[None])[0].numpy()


def trim_silence(audio: np.ndarray, sr: int, trim_db: float, pad_ms: float) -> np.ndarray:
    """Cut leading/trailing stretches quieter than `trim_db` below the loudest 10 ms frame and leave exactly
    `pad_ms` at each end (the engine's own quiet samples where it has them, zeros where it has none: eSpeak
    starts speaking at sample 0, and a model should not learn to tell engines apart by their lead-in)."""
    frame = max(1, sr // 100)
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    peak = rms.max()
    if peak <= 0:
        return audio[:0]
    loud = np.nonzero(rms >= peak * 10 ** (-trim_db / 20))[0]
    pad = int(sr * pad_ms / 1000)
    first, last = loud[0] * frame, min(len(audio), (loud[-1] + 1) * frame)
    start, end = max(0, first - pad), min(len(audio), last + pad)
    head = np.zeros(pad - (first - start), dtype=audio.dtype)
    tail = np.zeros(pad - (end - last), dtype=audio.dtype)
    return np.concatenate([head, audio[start:end], tail])


def postprocess(
    audio: np.ndarray, sr: int, speed: float, config: Mapping[str, Any], source: str = "<tts>"
) -> np.ndarray:
    """Engine output -> corpus audio: trim, resample to 16 kHz (with the speed factor), peak-normalise."""
    audio = trim_silence(np.asarray(audio, dtype=np.float32), sr, config["trim_db"], config["trim_pad_ms"])
    if audio.size == 0:
        return audio
    # Speed s: resample to 16000/s Hz and call it 16 kHz. Rounded to 100 Hz so the sinc kernel stays small.
    target = SAMPLE_RATE if speed == 1.0 else int(round(SAMPLE_RATE / speed / 100.0) * 100)
    out = _resample(audio, sr, target, source)
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0:
        out = out * (config["peak_level"] / peak)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def encode_flac(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


__all__ = ["trim_silence", "postprocess", "encode_flac"]

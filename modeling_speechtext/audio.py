"""Audio in: load any file soundfile or torchcodec can read, down-mix to mono, resample to the model rate, validate.

Every corpus, the speech tokenizer and the demo take audio through these few functions, so that a bad file fails
once, here, with a message naming the file and the problem, instead of deep inside a feature extractor as a shape
error or, worse, as NaN losses three hours into training. The rules:

- Hard problems raise `AudioError` (a `ValueError`, so the CLI prints one line, not a traceback): unreadable or
  corrupt bytes, empty audio, NaN/inf samples, dtypes that are not audio (bool, complex, object, strings), layouts
  that are not mono or multichannel audio, and sample rates that cannot be right (non-integer, < 1 kHz, > 384 kHz).
- Soft problems warn (`AudioWarning`) and are returned by `validate_audio`: clipping, samples beyond full scale,
  near-silence. They are often real data (a loud speaker, a pause) and a corpus builder may keep or drop them.
- Nothing is silently truncated: over-long audio is split by `chunk_audio` so that every sample is kept.

Decoding tries soundfile first (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3; fast, exact frame counts) and falls
back to torchcodec's FFmpeg `AudioDecoder` for everything else (m4a/AAC, webm, video containers). Resampling uses
`torchaudio.functional.resample` with a Kaiser-windowed sinc (resampy's kaiser_best), so every stage resamples
identically and cleanly. torch, torchaudio, soundfile and torchcodec are imported inside the functions that need
them: importing this module costs only numpy.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from modeling_speechtext.constants import SAMPLE_RATE

MIN_SAMPLE_RATE = 1_000
"""Below this no speech survives (telephone audio is 8 kHz); a smaller "rate" is usually a duration or a typo."""

MAX_SAMPLE_RATE = 384_000
"""The highest rate real converters ship; a larger "rate" is usually a sample count passed by mistake."""

MAX_CHANNELS = 32
"""When the channel axis is inferred, it must be this short: a (batch, samples) array must not be down-mixed."""

CLIP_LEVEL = 0.999
"""A sample at or above this magnitude counts as clipped (int16 full scale is 32767/32768 = 0.99997)."""

CLIP_FRACTION = 1e-3
"""Warn about clipping when more than this fraction of samples is clipped: a few peaks touching full scale are
normal in loud speech; more than 0.1% of samples means the recording was driven into distortion."""

SILENCE_RMS = 1e-4
"""Warn about near-silence below this RMS (-80 dBFS): far below any recorded speech, even a quiet one."""

MAX_CHUNK_SECONDS = 30.0
"""Default chunk length for `chunk_audio`: the Whisper-style encoder's 30 s window."""

_MAX_RESAMPLE_KERNEL = 12_000_000
"""torchaudio's sinc kernel has (new/g) x (orig/g) taps for g = gcd(orig, new): 16001 -> 16000 Hz would take 15 s
and 5 GB. Above this many taps (~200 MB, e.g. 44056 -> 16000 Hz still fits) the rate ratio is approximated."""


class AudioError(ValueError):
    """Audio that cannot be used. The message always starts with the source (a path, "<bytes>" or "<array>")
    followed by the problem, so one line in a log of thousands of files says which file to fix and how."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")

    def __reduce__(self):
        # Errors raised in `datasets.map(num_proc=...)` workers are pickled back to the parent process.
        return (type(self), (self.source, self.problem))


class AudioWarning(UserWarning):
    """Usable but suspicious audio (clipping, near-silence). A separate class so callers can filter or escalate
    it with `warnings.simplefilter("error", AudioWarning)`."""


def _warn(message: str) -> None:
    """Warn at the first caller outside this module, so the warning points at user code whatever the call path."""
    here = _warn.__code__.co_filename
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is _warn's caller
    while frame is not None and frame.f_code.co_filename == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, AudioWarning, stacklevel=level)


def _check_rate(rate: Any, source: str, name: str) -> int:
    """A sample rate as a positive whole number of Hz in the plausible range, or an `AudioError` saying why not."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise AudioError(source, f"{name} must be a whole number of Hz, got {rate!r} ({type(rate).__name__})")
    if not math.isfinite(rate) or float(rate) != int(rate):
        raise AudioError(source, f"{name} must be a whole number of Hz, got {rate!r}")
    rate = int(rate)
    if rate <= 0:
        raise AudioError(source, f"{name} must be positive, got {rate} Hz")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            source,
            f"{name}={rate} Hz is outside the plausible range {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz "
            "(was a duration or a sample count passed as the rate?)",
        )
    return rate


_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def _as_float32(array: Any, source: str) -> np.ndarray:
    """Samples as a new float32 numpy array in [-1, 1] (for PCM integers); rejects what is not audio.

    int8/int16/int32 are signed PCM and uint8 is 8-bit WAV's offset PCM, each scaled by its full scale. int64 and
    the other unsigned types have no PCM convention (an int64 array is usually `torch.tensor([...])` of labels or
    token ids), so they are refused rather than guessed.
    """
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported; never import it for this
    if torch is not None and isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
            array = array.float()
        array = array.numpy()
    try:
        arr = np.asarray(array)
    except Exception as err:  # ragged lists and the like
        raise AudioError(source, f"cannot be read as an array of samples: {err}") from err
    dt = arr.dtype
    if dt.kind == "f":
        return np.array(arr, dtype=np.float32)  # always a copy: callers may keep mutating their buffer
    if dt in _INT_SCALE:
        return (arr.astype(np.float32) / np.float32(_INT_SCALE[dt])).astype(np.float32)
    if dt == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    hint = {
        "b": "bool is a mask, not audio",
        "c": "complex values are a spectrum, not a waveform",
        "O": "object arrays usually mean ragged or mixed data",
        "U": "strings are not samples (a path? use load_audio)",
        "S": "bytes are not samples (encoded audio? use load_audio)",
    }.get(dt.kind, "integer samples must be int8/int16/int32 PCM or uint8 (8-bit WAV); convert others to float")
    raise AudioError(source, f"wrong dtype {dt}: expected float samples or int8/int16/int32/uint8 PCM ({hint})")


def _samples_by_channels(array: Any, sr: int, source: str, channel_axis: int | None) -> np.ndarray:
    """Float32 samples as (samples, channels), after the hard checks: dtype, layout, emptiness, NaN/inf.

    Orientation when `channel_axis` is None: the shorter axis holds the channels, since audio has far more samples
    than channels; it must be at most `MAX_CHANNELS` long and strictly shorter than the other axis, so a (batch,
    samples) array or a square array is refused instead of being averaged into nonsense.
    """
    x = _as_float32(array, source)
    if x.ndim not in (1, 2):
        raise AudioError(source, f"expected 1-D (samples,) or 2-D (samples, channels) audio, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(source, f"empty audio (0 samples, shape {x.shape})")
    if x.ndim == 1:
        x = x[:, None]
    else:
        if channel_axis is None:
            channel_axis = int(np.argmin(x.shape))
            if x.shape[0] == x.shape[1] or x.shape[channel_axis] > MAX_CHANNELS:
                raise AudioError(
                    source,
                    f"cannot tell channels from samples in shape {x.shape} (channels must be the shorter axis and at "
                    f"most {MAX_CHANNELS}); pass channel_axis=0 for (channels, samples) or 1 for (samples, channels)",
                )
        if channel_axis not in (0, 1, -1, -2):
            raise AudioError(source, f"channel_axis must be 0 or 1 for 2-D audio, got {channel_axis}")
        if channel_axis in (0, -2):
            x = x.T
    finite = np.isfinite(x)
    if not finite.all():
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        first = int(np.argmin(finite.all(axis=1)))
        raise AudioError(
            source,
            f"contains non-finite samples: {n_nan} NaN and {n_inf} inf out of {x.size} "
            f"(first at sample {first}, {first / sr:.3f} s)",
        )
    return x


def _soft_checks(x: np.ndarray, source: str) -> list[str]:
    """Clipping, out-of-range and near-silence warnings, emitted and returned."""
    found = []
    peak = float(np.abs(x).max())
    if peak > 1.0:
        found.append(
            f"samples exceed full scale [-1, 1] (peak {peak:.4g}); they will clip when written as PCM "
            "(integer PCM passed as float? divide int16 values by 32768)"
        )
    clipped = float(np.count_nonzero(np.abs(x) >= CLIP_LEVEL)) / x.size
    if clipped > CLIP_FRACTION:
        found.append(
            f"clipping: {clipped:.2%} of samples at or beyond |x| >= {CLIP_LEVEL} "
            f"(threshold {CLIP_FRACTION:.2%}); the recording is distorted"
        )
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms == 0.0:
        found.append("silence: every sample is zero")
    elif rms < SILENCE_RMS:
        found.append(f"near-silence: RMS {rms:.2e} ({20 * math.log10(rms):.0f} dBFS) is below {SILENCE_RMS:g}")
    for problem in found:
        _warn(f"{source}: {problem}")
    return found


def validate_audio(array: Any, sr: int, source: str = "<array>", *, channel_axis: int | None = None) -> list[str]:
    """Check audio before it enters a corpus or a model: raise on what is unusable, warn on what is suspicious.

    Raises `AudioError` for a bad sample rate, a non-audio dtype, a shape that is not (n,) or 2-D, empty audio and
    NaN/inf samples (shapes and `channel_axis` as in `prepare_audio`). Returns (and emits as `AudioWarning`) one
    message per soft problem: clipping (more than `CLIP_FRACTION` of samples at |x| >= `CLIP_LEVEL`), float samples
    beyond [-1, 1], and near-silence (RMS below `SILENCE_RMS`). An empty list means clean audio. Clipping is
    measured per channel, before any down-mix, because mixing a clipped channel with a clean one hides the
    distortion without removing it.
    """
    sr = _check_rate(sr, source, "sr")
    return _soft_checks(_samples_by_channels(array, sr, source, channel_axis), source)


_RESAMPLE_KWARGS = {
    "lowpass_filter_width": 64,
    "rolloff": 0.9475937167399596,
    "resampling_method": "sinc_interp_kaiser",
    "beta": 14.769656459379492,
}
"""resampy's "kaiser_best" filter. torchaudio's default (Hann window, width 6) loses 1.7 dB at 3.5 kHz going
8 -> 16 kHz and folds a 9 kHz tone into 7 kHz at only -17 dB going 48 -> 16 kHz; this one is flat to 95% of
Nyquist and rejects aliases by > 130 dB, and still resamples a minute of audio in ~50 ms on one core."""


def _kernel_taps(ratio: Fraction) -> int:
    """Size of torchaudio's sinc kernel for a reduced rate ratio orig/new with `_RESAMPLE_KWARGS`."""
    orig, new = ratio.numerator, ratio.denominator
    width = _RESAMPLE_KWARGS["lowpass_filter_width"] * orig / (_RESAMPLE_KWARGS["rolloff"] * min(orig, new))
    return new * (orig + 2 * math.ceil(width))


def _resample(x: np.ndarray, orig_sr: int, target_sr: int, source: str) -> np.ndarray:
    """`torchaudio.functional.resample` with the rate ratio reduced, and approximated only when the exact sinc
    kernel would be absurdly large (coprime rates such as 16001 -> 16000 Hz), in which case a warning says so."""
    if orig_sr == target_sr:
        return x
    import torch
    import torchaudio.functional as AF

    ratio = Fraction(orig_sr, target_sr)
    if _kernel_taps(ratio) > _MAX_RESAMPLE_KERNEL:
        # The kernel grows as denominator^2 * ratio, so start from the largest denominator that could fit.
        max_den = max(1, int(math.sqrt(_MAX_RESAMPLE_KERNEL / float(ratio))))
        approx = ratio.limit_denominator(max_den)
        while max_den > 1 and (approx.numerator == 0 or _kernel_taps(approx) > _MAX_RESAMPLE_KERNEL):
            max_den = max(1, max_den * 3 // 4)
            approx = ratio.limit_denominator(max_den)
        ppm = abs(float(approx) / float(ratio) - 1.0) * 1e6
        _warn(
            f"{source}: resampling {orig_sr} -> {target_sr} Hz approximated as "
            f"{approx.numerator}:{approx.denominator} (speed and pitch off by {ppm:.3g} ppm) "
            "because the exact filter would be too large"
        )
        ratio = approx
    wave = torch.from_numpy(np.require(x, dtype=np.float32, requirements=["C", "W"]))[None]
    out = AF.resample(wave, ratio.numerator, ratio.denominator, **_RESAMPLE_KWARGS)[0]
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


def prepare_audio(
    array: Any,
    orig_sr: int,
    target_sr: int = SAMPLE_RATE,
    source: str = "<array>",
    *,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Turn decoded samples into what every model here takes: float32 mono at `target_sr`, checked.

    `array` is a numpy array or torch tensor (any array-like) of float samples or int8/int16/int32/uint8 PCM
    (scaled to [-1, 1]), shaped (n,), (n, channels) as soundfile returns or (channels, n) as torchaudio and
    torchcodec return. Channels are averaged. With `channel_axis=None` the shorter axis is taken as channels
    (at most `MAX_CHANNELS`); pass `channel_axis` when that guess cannot work (a clip shorter than its channel
    count, or a square array). `source` names the input in errors and warnings.

    Raises `AudioError` on bad rates, dtypes, shapes, empty or non-finite audio; warns (`AudioWarning`) on clipping
    and near-silence (see `validate_audio`). The result is always a new array; its length is
    ceil(n * target_sr / orig_sr). Long audio is returned whole: split it with `chunk_audio`, never truncate it.
    """
    orig_sr = _check_rate(orig_sr, source, "orig_sr")
    target_sr = _check_rate(target_sr, source, "target_sr")
    x = _samples_by_channels(array, orig_sr, source, channel_axis)
    _soft_checks(x, source)
    mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)  # average: equal weight per channel
    return _resample(np.ascontiguousarray(mono), orig_sr, target_sr, source)


def _first_line(err: BaseException) -> str:
    """A decoder error as one short line: torchcodec prefixes C++ file:line noise, soundfile repeats the path."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = re.sub(r"^.*\.cpp:\d+, ", "", text)
    text = re.sub(r"^Error opening .*?: |^Error\s*:\s*", "", text).rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


def _truncated_wav(head: bytes, size: int) -> str | None:
    """Why a RIFF/WAVE file is cut short, or None. libsndfile and FFmpeg both quietly decode what is left of an
    interrupted download, so compare the `data` chunk's declared size with the bytes actually present. Streaming
    writers declare 0 or 0xFFFFFFFF (size unknown): those are trusted, not flagged."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, declared = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            present = size - (pos + 8)
            if declared in (0, 0xFFFFFFFF) or declared <= present:
                return None
            return f"truncated WAV: the header declares {declared} bytes of samples but only {present} are present"
        pos += 8 + declared + (declared & 1)  # chunks are padded to an even size
    return None


def _decode_soundfile(data: str | bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data) as f:
        return f.read(dtype="float32", always_2d=True), int(f.samplerate)  # (frames, channels)


def _decode_torchcodec(data: str | bytes) -> tuple[np.ndarray, int]:
    from torchcodec.decoders import AudioDecoder

    samples = AudioDecoder(data).get_all_samples()  # data: (channels, frames) float32 at the native rate
    return samples.data.numpy(), int(samples.sample_rate)


def load_audio(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    sampling_rate: int = SAMPLE_RATE,
    *,
    name: str | None = None,
) -> np.ndarray:
    """Decode an audio file (a path, encoded bytes or a binary file object) to float32 mono at `sampling_rate`.

    soundfile is tried first, torchcodec (FFmpeg) second, so WAV/FLAC/OGG/MP3 and m4a/AAC/webm all load. The
    whole file is returned (split long recordings with `chunk_audio`). `name` is how errors refer to the input;
    it defaults to the path, the file object's name or "<bytes>" (pass the dataset row id for in-memory audio).

    Raises `FileNotFoundError` for a missing path and `AudioError` for an empty file, unreadable or corrupt data
    (with both decoders' reasons), a truncated WAV, and everything `prepare_audio` rejects. Warns on clipping and
    near-silence.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, data = name or "<bytes>", bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        label = name or str(path)
        if not path.exists():
            raise FileNotFoundError(f"{label}: no such audio file")
        if path.is_dir():
            raise AudioError(label, "is a directory, not an audio file")
        data = str(path)
    elif hasattr(source, "read"):
        label, data = name or str(getattr(source, "name", "<file object>")), source.read()
        if not isinstance(data, bytes):
            raise AudioError(label, f"file object must be opened in binary mode (read() gave {type(data).__name__})")
    else:
        raise TypeError(f"load_audio takes a path, bytes or a binary file object, got {type(source).__name__}")
    sampling_rate = _check_rate(sampling_rate, label, "sampling_rate")

    size = len(data) if isinstance(data, bytes) else os.path.getsize(data)
    if size == 0:
        raise AudioError(label, "empty file (0 bytes)")
    if isinstance(data, bytes):
        head = data[:65536]
    else:
        with open(data, "rb") as f:
            head = f.read(65536)
    problem = _truncated_wav(head, size)
    if problem:
        raise AudioError(label, problem)
    reasons = []
    for backend, decode, axis in (("soundfile", _decode_soundfile, 1), ("torchcodec", _decode_torchcodec, 0)):
        try:
            samples, native_sr = decode(data)
        except ImportError as err:
            reasons.append(f"{backend} unavailable: {_first_line(err)}")
            continue
        except Exception as err:  # each library raises its own types (LibsndfileError, RuntimeError, ...)
            reasons.append(f"{backend}: {_first_line(err)}")
            continue
        if samples.size == 0:
            raise AudioError(label, f"empty audio: the {backend} decoder found 0 samples in {size} bytes")
        return prepare_audio(samples, native_sr, sampling_rate, label, channel_axis=axis)
    raise AudioError(label, "unreadable or corrupt audio data (" + "; ".join(reasons) + ")")


def chunk_audio(
    array: np.ndarray, sr: int, max_seconds: float = MAX_CHUNK_SECONDS, overlap_seconds: float = 0.0
) -> list[np.ndarray]:
    """Split mono audio into chunks of at most `max_seconds`, so long recordings are kept whole, not truncated.

    Chunk k starts at k * (max - overlap) samples; the last chunk ends exactly at the end of the input and may be
    shorter. With `overlap_seconds=0` the chunks concatenate back to the input, so every sample is covered once;
    an overlap lets a model see context across the cut (the caller merges the overlapping parts). Chunks are
    views into `array`. Audio no longer than `max_seconds` comes back as a single chunk.
    """
    x = np.asarray(array)
    sr = _check_rate(sr, "<array>", "sr")
    if x.ndim != 1:
        raise AudioError("<array>", f"chunk_audio takes mono (n,) audio, got shape {x.shape}; down-mix first")
    if x.size == 0:
        raise AudioError("<array>", "empty audio (0 samples) cannot be chunked")
    size = round(max_seconds * sr)
    hop = size - round(overlap_seconds * sr)
    if size < 1:
        raise ValueError(f"max_seconds={max_seconds} is shorter than one sample at {sr} Hz")
    if overlap_seconds < 0 or hop < 1:
        raise ValueError(f"overlap_seconds={overlap_seconds} must be >= 0 and shorter than max_seconds={max_seconds}")
    chunks, start = [], 0
    while True:
        chunks.append(x[start : start + size])
        if start + size >= x.size:
            return chunks
        start += hop


__all__ = [
    "AudioError",
    "AudioWarning",
    "CLIP_FRACTION",
    "CLIP_LEVEL",
    "MAX_CHANNELS",
    "MAX_CHUNK_SECONDS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "SILENCE_RMS",
    "chunk_audio",
    "load_audio",
    "prepare_audio",
    "validate_audio",
]

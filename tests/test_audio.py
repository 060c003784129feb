"""Audio utilities: every bad input fails with a message naming the source and the problem, resampling keeps
frequencies, nothing is truncated, and the real corpora load at 16 kHz with their catalogued durations."""

import contextlib
import json
import math
import pickle
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from modeling_speechtext.audio import (
    AudioError,
    AudioWarning,
    chunk_audio,
    load_audio,
    prepare_audio,
    validate_audio,
)
from modeling_speechtext.constants import SAMPLE_RATE
from modeling_speechtext.paths import PROJECT_ROOT, shared_data_dir


def sine(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


@contextlib.contextmanager
def no_audio_warnings():
    """Any AudioWarning inside fails the test (clean input must stay quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        yield


# ---------------------------------------------------------------- loader: bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav: no such audio file"):
        load_audio(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"zero\.wav: empty file \(0 bytes\)"):
        load_audio(path)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "header_only.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"header_only\.wav: empty audio"):
        load_audio(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "junk.flac"
    path.write_bytes(b"definitely not audio " * 50)
    with pytest.raises(AudioError, match=r"junk\.flac: unreadable or corrupt audio data \(soundfile: .*torchcodec: "):
        load_audio(path)
    with pytest.raises(AudioError, match=r"^<bytes>: unreadable or corrupt"):
        load_audio(path.read_bytes())
    with pytest.raises(AudioError, match=r"^row-17: unreadable or corrupt"):
        load_audio(path.read_bytes(), name="row-17")


def test_truncated_flac(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, sine(440, 16000), 16000)
    data = good.read_bytes()
    bad = tmp_path / "cut.flac"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.flac: unreadable or corrupt audio data"):
        load_audio(bad)


def test_truncated_wav_is_not_silently_shortened(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, sine(440, 16000), 16000)
    data = good.read_bytes()
    bad = tmp_path / "cut.wav"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated WAV: the header declares 32000 bytes"):
        load_audio(bad)


def test_streamed_wav_with_unknown_size_loads(tmp_path):
    """Streaming writers (ffmpeg to a pipe) declare size 0xFFFFFFFF: that is not truncation."""
    good = tmp_path / "good.wav"
    sf.write(good, sine(440, 16000), 16000)
    data = bytearray(good.read_bytes())
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"  # RIFF size and data size (soundfile writes data at offset 36)
    assert data[36:40] == b"data"
    assert len(load_audio(bytes(data))) == 16000


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        load_audio(tmp_path)


def test_nan_samples_in_file(tmp_path):
    x = sine(440, 16000)
    x[100] = np.nan
    x[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(
        AudioError, match=r"nan\.wav: contains non-finite samples: 1 NaN and 1 inf .*first at sample 100, 0.006 s\)"
    ):
        load_audio(path)


@pytest.mark.parametrize("rate", [500, 400_000])
def test_absurd_rate_in_file(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, sine(100, rate, 0.1, 0.5), rate)
    with pytest.raises(
        AudioError, match=rf"r{rate}\.wav: orig_sr={rate} Hz is outside the plausible range 1000-384000"
    ):
        load_audio(path)


def test_bad_target_rate(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, sine(440, 16000), 16000)
    with pytest.raises(AudioError, match=r"ok\.wav: sampling_rate must be a whole number of Hz, got 22050.5"):
        load_audio(path, sampling_rate=22050.5)


def test_text_mode_file_object(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, sine(440, 16000), 16000)
    with open(path, encoding="latin-1") as f, pytest.raises(AudioError, match="must be opened in binary mode"):
        load_audio(f)


# ---------------------------------------------------------------- loader: good files


def test_stereo_44k_int16_wav_to_mono_16k(tmp_path):
    left, right = sine(440, 44100, amp=0.4), sine(440, 44100, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    with no_audio_warnings():
        y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == math.ceil(44100 * SAMPLE_RATE / 44100)
    assert abs(peak_hz(y, SAMPLE_RATE) - 440) <= 1
    assert np.abs(y[1000:-1000]).max() == pytest.approx(0.3, abs=0.01)  # the average of 0.4 and 0.2


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make an m4a")
def test_m4a_falls_back_to_torchcodec(tmp_path):
    wav, m4a = tmp_path / "a.wav", tmp_path / "a.m4a"
    sf.write(wav, sine(440, 22050), 22050)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(m4a)], check=True)
    with pytest.raises(sf.LibsndfileError):
        sf.info(m4a)  # so the result below really came from the fallback
    for src in (m4a, m4a.read_bytes(), open(m4a, "rb")):
        y = load_audio(src)
        assert abs(len(y) / SAMPLE_RATE - 1.0) < 0.1  # AAC priming adds a few ms
        assert abs(peak_hz(y, SAMPLE_RATE) - 440) <= 1


# ---------------------------------------------------------------- prepare_audio: bad arrays


BAD_ARRAYS = [
    (np.zeros(0, np.float32), r"empty audio \(0 samples"),
    (np.zeros((0, 2), np.float32), r"empty audio \(0 samples"),
    (
        np.array([0.1, np.nan, 0.2], np.float32),
        r"contains non-finite samples: 1 NaN and 0 inf .*first at sample 1, 0.000 s",
    ),
    (np.array([0.1, 0.2, -np.inf], np.float64), r"contains non-finite samples: 0 NaN and 1 inf"),
    (np.ones(100, bool), r"wrong dtype bool.*mask"),
    (np.ones(100, np.complex64), r"wrong dtype complex64.*spectrum"),
    (np.array([0.1, None] * 50, dtype=object), r"wrong dtype object"),
    (np.array(["a.wav"] * 100), r"wrong dtype <U5.*use load_audio"),
    (np.ones(100, np.int64), r"wrong dtype int64"),
    (np.ones(100, np.uint16), r"wrong dtype uint16"),
    (torch.ones(100, dtype=torch.bool), r"wrong dtype bool"),
    (np.zeros((2, 3, 100), np.float32), r"expected 1-D \(samples,\) or 2-D .*got shape \(2, 3, 100\)"),
    (np.zeros((100, 100), np.float32), r"cannot tell channels from samples in shape \(100, 100\)"),
    (np.zeros((64, 16000), np.float32), r"cannot tell channels from samples in shape \(64, 16000\)"),
]


@pytest.mark.parametrize("array,problem", BAD_ARRAYS, ids=[p[:24] for _, p in BAD_ARRAYS])
def test_prepare_rejects_bad_arrays(array, problem):
    with pytest.raises(AudioError, match="^clip-7: " + problem):
        prepare_audio(array, 16000, source="clip-7")


BAD_RATES = [
    (0, r"orig_sr must be positive, got 0 Hz"),
    (-16000, r"orig_sr must be positive"),
    (999, r"orig_sr=999 Hz is outside the plausible range 1000-384000 Hz"),
    (384_001, r"orig_sr=384001 Hz is outside the plausible range"),
    (22050.5, r"orig_sr must be a whole number of Hz, got 22050.5"),
    (float("nan"), r"orig_sr must be a whole number of Hz"),
    ("16000", r"orig_sr must be a whole number of Hz, got '16000' \(str\)"),
    (None, r"orig_sr must be a whole number of Hz, got None"),
    (True, r"orig_sr must be a whole number of Hz, got True \(bool\)"),
]


@pytest.mark.parametrize("rate,problem", BAD_RATES, ids=[repr(r) for r, _ in BAD_RATES])
def test_prepare_rejects_absurd_rates(rate, problem):
    with pytest.raises(AudioError, match="^<array>: " + problem):
        prepare_audio(sine(440, 16000), rate)


def test_target_rate_is_checked_too():
    with pytest.raises(AudioError, match="target_sr=100 Hz is outside"):
        prepare_audio(sine(440, 16000), 16000, 100)


def test_audio_error_is_a_value_error_and_pickles():
    err = AudioError("a.wav", "empty file (0 bytes)")
    assert isinstance(err, ValueError) and str(err) == "a.wav: empty file (0 bytes)"
    back = pickle.loads(pickle.dumps(err))  # datasets.map(num_proc=...) ships worker errors this way
    assert (back.source, back.problem, str(back)) == (err.source, err.problem, str(err))


# ---------------------------------------------------------------- prepare_audio: conversions


@pytest.mark.filterwarnings("ignore::modeling_speechtext.audio.AudioWarning")  # full-scale values are clipping
def test_integer_pcm_is_scaled_to_unit_range():
    np.testing.assert_array_equal(prepare_audio(np.array([-32768, 0, 16384] * 100, np.int16), 16000)[:3], [-1, 0, 0.5])
    np.testing.assert_array_equal(prepare_audio(np.array([-(2**31), 2**30] * 100, np.int32), 16000)[:2], [-1, 0.5])
    np.testing.assert_array_equal(prepare_audio(np.array([0, 128, 192] * 100, np.uint8), 16000)[:3], [-1, 0, 0.5])


def test_downmix_orientations():
    a, b = sine(440, 16000, amp=0.4), sine(440, 16000, amp=0.2)
    want = (a + b) / 2
    np.testing.assert_allclose(prepare_audio(np.stack([a, b], axis=1), 16000), want, atol=1e-7)  # soundfile
    np.testing.assert_allclose(prepare_audio(np.stack([a, b]), 16000), want, atol=1e-7)  # torchaudio/torchcodec
    np.testing.assert_allclose(prepare_audio(torch.from_numpy(np.stack([a, b])).half(), 16000), want, atol=1e-3)
    np.testing.assert_allclose(prepare_audio(torch.from_numpy(a).bfloat16(), 16000), a, atol=1e-2)
    # two samples of three channels cannot be guessed (the shorter axis is the samples): say so explicitly
    three = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    np.testing.assert_allclose(prepare_audio(three, 16000, channel_axis=1), [0.2, 0.5], atol=1e-7)


def test_result_is_a_new_array():
    x = sine(440, 16000)
    y = prepare_audio(x, 16000)
    y[:] = 0
    assert x.any()


# ---------------------------------------------------------------- warnings


def test_clipping_warns():
    x = np.clip(sine(440, 16000, amp=1.5), -1, 1)
    with pytest.warns(AudioWarning, match=r"^clipped-take: clipping: .*% of samples at or beyond"):
        found = validate_audio(x, 16000, "clipped-take")
    assert len(found) == 1 and found[0].startswith("clipping")
    with pytest.warns(AudioWarning, match="clipping"):
        y = prepare_audio(x, 16000)
    assert len(y) == len(x)  # a warning, not an error: the audio still comes back


def test_float_beyond_full_scale_warns():
    x = sine(440, 16000) * 32767  # int16 values in a float array
    with pytest.warns(AudioWarning) as caught:
        found = validate_audio(x, 16000)
    assert [str(w.message) for w in caught] == [f"<array>: {problem}" for problem in found]
    assert len(found) == 2 and "integer PCM passed as float" in found[0] and found[1].startswith("clipping")


def test_silence_warns():
    with pytest.warns(AudioWarning, match="silence: every sample is zero"):
        assert validate_audio(np.zeros(16000, np.float32), 16000) == ["silence: every sample is zero"]
    with pytest.warns(AudioWarning, match=r"near-silence: RMS 1.0\de-05 \(-100 dBFS\)"):
        validate_audio(np.full(16000, 1e-5, np.float32), 16000)


def test_clean_audio_is_quiet_and_warnings_point_at_the_caller():
    with no_audio_warnings():
        assert validate_audio(sine(440, 16000), 16000) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_audio(np.zeros(1000, np.float32), 16000)
    assert [w.filename for w in caught] == [__file__]


def test_validate_raises_hard_errors():
    with pytest.raises(AudioError, match="^take-3: contains non-finite samples"):
        validate_audio(np.array([np.nan, 0.0]), 16000, "take-3")
    with pytest.raises(AudioError, match="^take-3: sr=50 Hz is outside"):
        validate_audio(sine(440, 16000), 50, "take-3")


# ---------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    "orig,target,freq",
    [(8000, 16000, 440), (8000, 16000, 3500), (44100, 16000, 1000), (48000, 16000, 7000), (22050, 16000, 440),
     (11025, 16000, 5000), (16000, 8000, 440)],
)  # fmt: skip
def test_resampling_keeps_frequency(orig, target, freq):
    y = prepare_audio(sine(freq, orig, 1.0), orig, target)
    assert len(y) == target  # one second in, one second out (ceil(n * target / orig))
    assert abs(peak_hz(y, target) - freq) <= 1.0
    core = y[target // 10 : -target // 10]  # away from the edges' filter ramp
    assert np.sqrt(np.mean(core**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)  # amplitude kept


@pytest.mark.parametrize("freq", [8500, 9000, 12000])
def test_downsampling_removes_instead_of_aliasing(freq):
    """A tone above 16 kHz's 8 kHz Nyquist must vanish, not fold back (9 kHz would alias to 7 kHz). torchaudio's
    default filter lets it through at -17 dB; the Kaiser filter used here must keep it below -60 dB."""
    y = prepare_audio(sine(freq, 48_000), 48_000, 16_000)[1600:-1600]  # skip the clicks where the tone starts/stops
    assert 20 * np.log10(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2))) < -60


def test_coprime_rates_are_approximated_with_a_warning_not_gigabytes():
    # The exact 16001 -> 16000 Hz sinc kernel would take ~5 GB and 15 s; 22051 Hz would take ~2 GB.
    with pytest.warns(AudioWarning, match=r"resampling 22051 -> 16000 Hz approximated as \d+:\d+ .*ppm"):
        y = prepare_audio(sine(440, 22051), 22051, 16000)
    assert abs(len(y) - 16000) <= 1
    assert abs(peak_hz(y, 16000) - 440) <= 1


# ---------------------------------------------------------------- chunking


@pytest.mark.parametrize("n", [1, 479_999, 480_000, 480_001, 1_200_000])
def test_chunks_cover_every_sample(n):
    x = np.arange(n, dtype=np.float32)
    chunks = chunk_audio(x, 16000, max_seconds=30)
    assert len(chunks) == max(1, math.ceil(n / 480_000))
    assert all(0 < len(c) <= 480_000 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), x)


def test_overlapping_chunks():
    x = np.arange(100_000, dtype=np.float32)
    chunks = chunk_audio(x, 16000, max_seconds=2.0, overlap_seconds=0.5)  # 32000 samples, hop 24000
    assert [int(c[0]) for c in chunks] == [0, 24000, 48000, 72000]
    assert int(chunks[-1][-1]) == 99_999 and all(len(c) <= 32000 for c in chunks)
    assert all(int(a[-1]) >= int(b[0]) for a, b in zip(chunks, chunks[1:]))  # they really overlap


def test_long_audio_is_kept_whole_then_chunked():
    y = prepare_audio(sine(440, 8000, seconds=75.0, amp=0.3), 8000)
    assert len(y) == 75 * SAMPLE_RATE  # no 30 s truncation anywhere
    assert [len(c) for c in chunk_audio(y, SAMPLE_RATE)] == [480_000, 480_000, 240_000]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"max_seconds": 0}, ValueError, "shorter than one sample"),
        ({"max_seconds": 1, "overlap_seconds": 1}, ValueError, "must be >= 0 and shorter than max_seconds"),
        ({"max_seconds": 1, "overlap_seconds": -1}, ValueError, "must be >= 0"),
    ],
)
def test_chunk_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        chunk_audio(np.zeros(100, np.float32), 16000, **kwargs)


def test_chunk_bad_arrays():
    with pytest.raises(AudioError, match="takes mono"):
        chunk_audio(np.zeros((2, 100), np.float32), 16000)
    with pytest.raises(AudioError, match="empty audio"):
        chunk_audio(np.zeros(0, np.float32), 16000)


# ---------------------------------------------------------------- real speech


def speech_rows(corpus: str, every: int):
    root = shared_data_dir()
    if root is None or not (root / "speech" / corpus / "metadata.jsonl").exists():
        pytest.skip(f"no offline data (speech/{corpus})")
    lines = (root / "speech" / corpus / "metadata.jsonl").read_text().splitlines()
    return [(root / "speech" / corpus, json.loads(line)) for line in lines[::every]]


@pytest.mark.parametrize("corpus,native_rate,every", [("fsdd", 8000, 300), ("vctk_p239", 16000, 50)])
def test_real_speech_loads_at_16k_with_catalogued_duration(corpus, native_rate, every):
    rows = speech_rows(corpus, every)
    assert len(rows) >= 10
    for folder, row in rows:
        path = folder / row["audio"]
        assert row["sampling_rate"] == native_rate == sf.info(path).samplerate  # so 8 kHz really gets resampled
        with no_audio_warnings():  # these recordings are clean: a warning here would be a false alarm
            y = load_audio(path)
        assert y.dtype == np.float32 and y.ndim == 1
        assert abs(len(y) / SAMPLE_RATE - row["duration"]) <= 1e-3, path
        assert 1e-3 < np.sqrt(np.mean(y**2)) and np.abs(y).max() <= 1.0


# ---------------------------------------------------------------- import cost


def test_import_does_not_pull_torch():
    code = "import sys, modeling_speechtext.audio; sys.exit('torch' in sys.modules or 'soundfile' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)

"""The offline TTS engines: each installed one speaks, responds to rate/pitch, and is a pure function of its inputs."""

import numpy as np
import pytest

from dataset_builders import tts_engines as te

TEXT = "Mary went back to the kitchen."
PROBES = {"espeak": "en-us+m3", "flite": "kal16", "festival": "kal_diphone", "piper": "joe"}


def _engine_or_skip(name):
    engine = te.get_engine(name)
    if not engine.available() or not engine.has_voice(PROBES[name]):
        pytest.skip(f"{name} with voice {PROBES[name]} is not installed (bash scripts/setup.sh)")
    return engine


@pytest.mark.tts
@pytest.mark.parametrize("name", sorted(PROBES))
def test_each_engine_speaks_plausibly(name):
    engine = _engine_or_skip(name)
    audio, sr = engine.synthesize(TEXT, PROBES[name])
    assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    assert 8000 <= sr <= 48000
    seconds = len(audio) / sr
    assert 0.8 < seconds < 5.0, f"{name}: {seconds:.2f} s for a 6-word sentence"
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.005 < rms and np.abs(audio).max() <= 1.0, f"{name}: silent or out of range (rms {rms:.4f})"


@pytest.mark.tts
@pytest.mark.parametrize("name", sorted(PROBES))
def test_each_engine_is_deterministic_and_history_free(name):
    """Same input -> same samples, even with other utterances and voices synthesized in between (eSpeak carries
    wave-generator state across utterances unless it is reloaded; piper samples noise unless it is off)."""
    engine = _engine_or_skip(name)
    first, _ = engine.synthesize(TEXT, PROBES[name], rate=1.1, pitch=0.95)
    engine.synthesize("Sandra picked up the football there.", PROBES[name], rate=0.9)
    again, _ = engine.synthesize(TEXT, PROBES[name], rate=1.1, pitch=0.95)
    assert engine.deterministic
    np.testing.assert_array_equal(first, again)


@pytest.mark.tts
@pytest.mark.parametrize("name", ["espeak", "flite", "festival"])
def test_rate_changes_duration(name):
    engine = _engine_or_skip(name)
    slow, sr = engine.synthesize(TEXT, PROBES[name], rate=0.75)
    fast, _ = engine.synthesize(TEXT, PROBES[name], rate=1.35)
    assert len(fast) < 0.85 * len(slow)


def _f0(audio, sr):
    """Median autocorrelation pitch of the voiced frames (enough to tell 100 Hz from 130 Hz)."""
    frame, out = int(0.04 * sr), []
    for i in range(0, len(audio) - frame, frame // 2):
        x = audio[i : i + frame] - audio[i : i + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.05 * np.abs(audio).max():
            continue
        c = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = sr // 400, sr // 60
        k = lo + int(np.argmax(c[lo:hi]))
        if c[k] > 0.4 * c[0]:
            out.append(sr / k)
    return float(np.median(out))


@pytest.mark.tts
@pytest.mark.parametrize("name", ["espeak", "flite"])
def test_pitch_moves_f0(name):
    engine = _engine_or_skip(name)
    voice = {"flite": "slt"}.get(name, PROBES[name])  # kal16 at 80 Hz fools this simple pitch tracker
    low, sr = engine.synthesize(TEXT, voice, pitch=0.85)
    high, _ = engine.synthesize(TEXT, voice, pitch=1.2)
    assert _f0(high, sr) > 1.15 * _f0(low, sr)


@pytest.mark.tts
def test_festival_batch_matches_single_calls_and_survives_quotes():
    engine = _engine_or_skip("festival")
    reqs = [
        te.SynthesisRequest('He said "no" to the \\ apple.', "kal_diphone"),
        te.SynthesisRequest(TEXT, "kal_diphone", rate=1.2),
        te.SynthesisRequest(TEXT, "no_such_voice"),
        te.SynthesisRequest("   ", "kal_diphone"),
    ]
    out = engine.synthesize_batch(reqs)
    # the bad requests come back as their own errors, in place, without failing the good ones
    assert isinstance(out[2], te.TTSError) and "no voice 'no_such_voice'" in str(out[2])
    assert isinstance(out[3], te.TTSError) and "empty text" in str(out[3])
    assert len(out[0][0]) / out[0][1] > 1.0
    single, _ = engine.synthesize(TEXT, "kal_diphone", rate=1.2)
    np.testing.assert_array_equal(out[1][0], single)


def test_voice_specs_and_speakers():
    assert te.parse_voice("espeak:en-us+m3") == te.VoiceSpec("espeak", "en-us+m3")
    assert str(te.parse_voice("festival:kal_diphone")) == "festival:kal_diphone"
    for bad, why in [("espeak", "must look like"), ("nope:x", "unknown engine 'nope'"), ("flite:", "names no voice"),
                     (3, "must look like")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            te.parse_voice(bad)
    # the same recorded person through two engines is one speaker; eSpeak voices are their variant
    assert te.speaker_of("flite:kal16") == te.speaker_of("festival:kal_diphone")
    assert te.speaker_of("flite:slt") == te.speaker_of("festival:cmu_us_slt_arctic_hts")
    assert te.speaker_of("espeak:en-us+m3") == te.speaker_of("espeak:en-gb-scotland+m3")
    assert te.speaker_of("espeak:en-us+m3") != te.speaker_of("espeak:en-us+m7")


def test_engine_registry_caches_one_instance_per_options():
    """piper keeps its ONNX session loaded: one engine per (name, options) per process, not one per call."""
    assert te.get_engine("piper") is te.get_engine("piper")
    assert te.get_engine("piper", noise_scale=0.5) is not te.get_engine("piper")
    assert te.get_engine("piper", noise_scale=0.5).noise_scale == 0.5
    assert not te.get_engine("piper", noise_scale=0.5).deterministic  # sampling noise: not a pure function
    assert set(te.ENGINE_CLASSES) == {"espeak", "flite", "festival", "piper"}
    with pytest.raises(ValueError, match="unknown TTS engine 'nope'"):
        te.get_engine("nope")


def test_command_line_engine_without_its_program():
    """An engine whose program is not on PATH is unavailable and lists no voices (its voices are skipped)."""
    engine = te.FliteEngine()
    engine.program = "no-such-tts-program-here"
    assert not engine.available()
    assert engine.voices() == [] and not engine.has_voice("kal16")
    with pytest.raises(te.TTSError, match="no voice 'kal16'"):
        engine.synthesize(TEXT, "kal16")


@pytest.mark.tts
def test_missing_voices_and_errors():
    engine = _engine_or_skip("espeak")
    assert te.missing_voices(["espeak:en-us+m3", "espeak:en-us+nonexistent", "espeak:xx"]) == [
        "espeak:en-us+nonexistent",
        "espeak:xx",
    ]
    with pytest.raises(te.TTSError, match="no voice"):
        engine.synthesize(TEXT, "en-us+nonexistent")
    with pytest.raises(te.TTSError, match="empty"):
        engine.synthesize("  ", "en-us+m3")


@pytest.mark.tts
def test_available_voices_on_a_setup_machine():
    voices = te.available_voices()
    assert len(voices) >= 3, f"expected >= 3 engines after scripts/setup.sh, found {sorted(voices)}"
    if "espeak" in voices:
        assert len(voices["espeak"]) > 100  # 8 English accents x ~100 variants
    if "flite" in voices:
        assert {"flite:kal16", "flite:awb", "flite:rms", "flite:slt"} <= set(voices["flite"])


@pytest.mark.tts
def test_espeak_breathy_variants_do_not_depend_on_the_clock():
    """Variants with breath/roughness (f2) draw noise from a generator eSpeak seeds with time() at init."""
    import time

    engine = _engine_or_skip("espeak")
    first, _ = engine.synthesize(TEXT, "en-gb-x-rp+f2")
    time.sleep(1.05)
    again, _ = engine.synthesize(TEXT, "en-gb-x-rp+f2")
    np.testing.assert_array_equal(first, again)

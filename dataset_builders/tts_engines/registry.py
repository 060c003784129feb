"""Voice specs (`<engine>:<voice>`, e.g. `espeak:en-us+m3`) -> engines: the registry, speakers, availability.

`speaker_of` is what keeps held-out voices honest: different engines can voice the same recorded person, and a
test voice must not share its speaker with any training voice.
"""

from __future__ import annotations

import logging
import time

from .base import TTSEngine, VoiceSpec
from .espeak import EspeakEngine
from .festival import FestivalEngine
from .flite import FliteEngine
from .piper import PiperEngine

logger = logging.getLogger(__name__)

ENGINE_CLASSES: dict[str, type[TTSEngine]] = {
    "espeak": EspeakEngine,
    "flite": FliteEngine,
    "festival": FestivalEngine,
    "piper": PiperEngine,
}


def parse_voice(spec: str) -> VoiceSpec:
    """`"flite:awb"` -> VoiceSpec("flite", "awb"); a clear ValueError for anything else."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"voice spec {spec!r} must look like '<engine>:<voice>' (e.g. 'espeak:en-us+m3', 'flite:awb')"
        )
    engine, voice = spec.split(":", 1)
    if engine not in ENGINE_CLASSES:
        raise ValueError(f"voice spec {spec!r}: unknown engine {engine!r}; engines are {sorted(ENGINE_CLASSES)}")
    if not voice:
        raise ValueError(f"voice spec {spec!r} names no voice")
    return VoiceSpec(engine, voice)


# Different engines voicing the same recorded person: a held-out voice must not share its speaker with any
# training voice, or "unseen voice" results are flattering.
_SPEAKER_ALIASES = {
    "flite:kal": "kal",
    "flite:kal16": "kal",
    "festival:kal_diphone": "kal",
    "flite:slt": "slt",
    "festival:cmu_us_slt_arctic_hts": "slt",
    "festival:cmu_us_slt_arctic_clunits": "slt",
    "flite:awb": "awb",
    "festival:cmu_us_awb_arctic_clunits": "awb",
    "flite:rms": "rms",
    "festival:cmu_us_rms_arctic_clunits": "rms",
    "festival:ked_diphone": "ked",
}


def speaker_of(spec: str) -> str:
    """The underlying speaker of a voice spec, for held-out checks.

    Recorded voices map to the person (flite:kal16 and festival:kal_diphone are both Kal); eSpeak voices map
    to their *variant* (`m3`, `f2`: the timbre), since the accent changes pronunciation, not the voice.
    """
    vs = parse_voice(spec)
    if vs.engine == "espeak":
        variant = vs.voice.partition("+")[2]
        return f"espeak-variant:{variant or 'default'}"
    return _SPEAKER_ALIASES.get(str(vs), str(vs))


_ENGINE_CACHE: dict[tuple, TTSEngine] = {}


def get_engine(name: str, **options) -> TTSEngine:
    """One engine instance per (name, options) per process (piper keeps its ONNX session loaded)."""
    if name not in ENGINE_CLASSES:
        raise ValueError(f"unknown TTS engine {name!r}; engines are {sorted(ENGINE_CLASSES)}")
    key = (name, tuple(sorted(options.items())))
    if key not in _ENGINE_CACHE:
        _ENGINE_CACHE[key] = ENGINE_CLASSES[name](**options)
    return _ENGINE_CACHE[key]


def available_engines(engine_options: dict[str, dict] | None = None) -> list[str]:
    out = []
    for name in ENGINE_CLASSES:
        if get_engine(name, **(engine_options or {}).get(name, {})).available():
            out.append(name)
        else:
            logger.warning("TTS engine %s is not installed; its voices are skipped (bash scripts/setup.sh)", name)
    return out


def available_voices(engine_options: dict[str, dict] | None = None) -> dict[str, list[str]]:
    """{engine: [voice specs]} for every installed engine (eSpeak lists accents x variants: ~800 voices)."""
    out = {}
    for name in available_engines(engine_options):
        engine = get_engine(name, **(engine_options or {}).get(name, {}))
        out[name] = [f"{name}:{v}" for v in engine.voices()]
    return out


def missing_voices(specs: list[str], engine_options: dict[str, dict] | None = None) -> list[str]:
    """The specs in `specs` this machine cannot synthesize (engine missing or voice not installed)."""
    missing = []
    for spec in specs:
        vs = parse_voice(spec)
        engine = get_engine(vs.engine, **(engine_options or {}).get(vs.engine, {}))
        if not engine.available() or not engine.has_voice(vs.voice):
            missing.append(spec)
    return missing


def synthesize(spec: str, text: str, rate: float | None = None, pitch: float | None = None, **options):
    """Convenience: `synthesize("flite:awb", "hello")` -> (float32 array, sample rate)."""
    vs = parse_voice(spec)
    return get_engine(vs.engine, **options).synthesize(text, vs.voice, rate, pitch)


def measure_engine_speed(
    specs: list[str], text: str = "Mary went back to the kitchen and picked up the apple.", repeats: int = 3
) -> dict[str, dict[str, float]]:
    """{spec: {"x_realtime", "audio_seconds", "synth_seconds"}}: how many seconds of speech per CPU second."""
    out = {}
    for spec in specs:
        vs = parse_voice(spec)
        engine = get_engine(vs.engine)
        engine.synthesize(text, vs.voice)  # warm-up (model load, page cache)
        start = time.perf_counter()
        audio_s = 0.0
        for _ in range(repeats):
            audio, sr = engine.synthesize(text, vs.voice)
            audio_s += len(audio) / sr
        synth_s = time.perf_counter() - start
        out[spec] = {"x_realtime": audio_s / synth_s, "audio_seconds": audio_s, "synth_seconds": synth_s}
    return out


__all__ = [
    "ENGINE_CLASSES",
    "parse_voice",
    "speaker_of",
    "get_engine",
    "available_engines",
    "available_voices",
    "missing_voices",
    "synthesize",
    "measure_engine_speed",
]

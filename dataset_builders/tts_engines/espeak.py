"""eSpeak NG, in-process through ctypes: formant synthesis, 8 English accents x ~100 variants, ~400x real time.

Robotic, but the cheapest way to many *different* voices: a speech tokenizer trained on three voices does not
generalise to a fourth (CALIBRATION.md in the shared reference).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import numpy as np

from .base import TTSEngine, TTSError

logger = logging.getLogger(__name__)

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


__all__ = ["EspeakEngine"]

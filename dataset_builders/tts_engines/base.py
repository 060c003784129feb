"""The interface every offline TTS engine implements, and what the engines share.

Every engine is a *pure function* of (text, voice, rate, pitch): the corpus builder relies on that for
determinism and for resuming a crashed build without changing a single sample. `rate` is a speaking-rate
multiplier (1.0 = the engine's default, 1.2 = 20% faster), `pitch` a multiplier of the fundamental frequency
(ignored by engines with `supports_pitch=False`).
"""

from __future__ import annotations

import functools
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TTSError(RuntimeError):
    """An engine could not synthesize one utterance (bad voice, engine crash, empty output)."""


@dataclass(frozen=True)
class VoiceSpec:
    engine: str
    voice: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.voice}"


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: str
    rate: float | None = None
    pitch: float | None = None


def ascii_text(text: str) -> str:
    """flite/festival read Latin-1-ish text: fold accents, drop what cannot be said, squeeze whitespace."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"\s+", " ", folded).strip()


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV an engine wrote -> (mono float32, sample rate): the command-line engines' common return path."""
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


class CommandLineEngine(TTSEngine):
    """An engine that is a program on PATH (flite, festival): installed when the program is found; its voices
    are listed once per process, because listing them means running the program or walking its folders."""

    program: str = ""

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def _list_voices(self) -> list[str]:
        raise NotImplementedError

    @functools.cached_property
    def _voices(self) -> list[str]:
        return self._list_voices() if self.available() else []

    def voices(self) -> list[str]:
        return list(self._voices)


__all__ = ["TTSError", "VoiceSpec", "SynthesisRequest", "TTSEngine", "CommandLineEngine", "ascii_text", "read_wav"]

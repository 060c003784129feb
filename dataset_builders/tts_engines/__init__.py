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

Rooms: `base` (the interface), one module per engine family (`espeak`, `flite`, `festival`, `piper`), `registry`
(specs -> engines, speakers, availability); `python -m dataset_builders.tts_engines` lists voices and speeds.
"""

from . import registry
from .base import SynthesisRequest, TTSEngine, TTSError, VoiceSpec
from .espeak import EspeakEngine
from .festival import FestivalEngine
from .flite import FliteEngine
from .piper import PiperEngine
from .registry import *  # noqa: F403 (all of registry.__all__, re-exported below)

# the public names of the registry are all re-exported; of `base` the interface an engine implements
__all__ = [
    "TTSError",
    "VoiceSpec",
    "SynthesisRequest",
    "TTSEngine",
    "EspeakEngine",
    "FliteEngine",
    "FestivalEngine",
    "PiperEngine",
    *registry.__all__,
]

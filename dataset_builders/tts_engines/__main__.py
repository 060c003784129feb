"""`python -m dataset_builders.tts_engines`: which engines and voices this machine has, and how fast each is."""

from __future__ import annotations

import logging
import os

from .registry import available_voices, measure_engine_speed, missing_voices


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


__all__: list[str] = []

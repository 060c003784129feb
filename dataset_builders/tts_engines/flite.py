"""flite (Debian): four real recorded speakers (kal16, awb, rms, slt) at 16 kHz, ~500x real time."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .base import CommandLineEngine, TTSError, ascii_text, read_wav


class FliteEngine(CommandLineEngine):
    """Debian `flite`: kal16 (diphone), awb, rms, slt (clustergen): recorded speakers, 16 kHz, ~500x real time."""

    name = "flite"
    program = "flite"
    # `kal` is the 8 kHz twin of kal16 and `awb_time` a talking clock: not useful voices for a corpus.
    _skip = {"kal", "awb_time"}

    def _list_voices(self) -> list[str]:
        proc = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30)
        listed = proc.stdout.split(":", 1)[-1].split()
        return [v for v in listed if v not in self._skip]

    def synthesize(self, text, voice, rate=None, pitch=None):
        text = ascii_text(self._check_text(text))
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
            return read_wav(out)


__all__ = ["FliteEngine"]

"""festival (Debian) with festvox voices: diphone and HTS voices, one festival process per batch."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .base import CommandLineEngine, SynthesisRequest, TTSError, ascii_text, read_wav

_FESTIVAL_SEARCH_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices", "/usr/local/share/festival/voices")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalEngine(CommandLineEngine):
    """Debian `festival` with festvox voices (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts, ...).

    Festival takes ~0.2 s to start and load a voice, so `synthesize_batch` runs one festival process per batch
    (one scheme script: select voice, set Duration_Stretch, `utt.save.wave` per utterance). Pitch is not
    exposed uniformly across festival's voice types: `supports_pitch=False` (the corpus builder's speed
    perturbation still shifts pitch and formants).
    """

    name = "festival"
    program = "festival"
    supports_pitch = False

    def _list_voices(self) -> list[str]:
        found = set()
        for root in _FESTIVAL_SEARCH_DIRS:
            for p in Path(root).glob("*/*"):
                if p.is_dir():
                    found.add(p.name)
        return sorted(found)

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
                text = ascii_text(r.text or "")
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
                        results[i] = read_wav(out)
                    else:
                        why = proc.stderr.strip()[-300:]
                        results[i] = TTSError(
                            f"festival {requests[i].voice}: no audio (exit {proc.returncode}): {why}"
                        )
        return results  # type: ignore[return-value]


__all__ = ["FestivalEngine"]

"""Spoken QA sets on disk: the manifest a user brings, and its audio turned into speech tokens.

A manifest is JSON lines, one question each:

    {"id": "q1", "task": 1, "context_audio": ["s1.wav", "s2.wav"], "question_audio": "q.wav", "answer": "garden",
     "context": ["Mary went to the garden.", "John left."], "question": "Where is Mary?"}

`context_audio` lists one file per story sentence (paths relative to the manifest), `context`/`question` are the
optional text (needed for T->T and T->S). `voice` is optional and only reported. The spoken QA builder of the
`spoken_qa` stage writes exactly this format, so the sets it builds and the ones users bring are read by one
function. Tokenizing encodes each distinct file once (a story's sentences are shared by all its questions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REQUIRED = ("id", "task", "context_audio", "question_audio", "answer")


def _check_record(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} (a spoken QA record needs {list(REQUIRED)})")
    audio = record["context_audio"]
    if not isinstance(audio, list) or not audio or not all(isinstance(a, str) and a for a in audio):
        raise ValueError(f"{where}: context_audio must be a non-empty list of audio paths, one per sentence")
    if not isinstance(record["question_audio"], str) or not record["question_audio"]:
        raise ValueError(f"{where}: question_audio must be an audio path")
    if not str(record["answer"]).strip():
        raise ValueError(f"{where}: empty answer")
    try:
        task = int(record["task"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: task must be an integer, got {record['task']!r}") from None
    context = record.get("context")
    if context is not None:
        if isinstance(context, str):
            context = [s for s in context.split("\n") if s.strip()]
        if not isinstance(context, list) or len(context) != len(audio):
            raise ValueError(f"{where}: context must have one sentence per context_audio file ({len(audio)})")
    return {**record, "task": task, "answer": str(record["answer"]).strip(), "context": context}


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Records of a spoken QA manifest with audio paths resolved; errors name the file and line."""
    manifest = Path(path)
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no such spoken QA manifest")
    records, ids = [], set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err.msg})") from None
        record = _check_record(raw, where)
        if record["id"] in ids:
            raise ValueError(f"{where}: duplicate id {record['id']!r}")
        ids.add(record["id"])
        resolve = lambda p: str((manifest.parent / p).resolve())  # noqa: E731
        record["context_audio"] = [resolve(p) for p in record["context_audio"]]
        record["question_audio"] = resolve(record["question_audio"])
        for p in [*record["context_audio"], record["question_audio"]]:
            if not Path(p).is_file():
                raise FileNotFoundError(f"{where}: audio file {p} does not exist")
        records.append(record)
    if not records:
        raise ValueError(f"{manifest}: empty spoken QA manifest")
    return records


def write_manifest(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Write records (audio paths relative to the manifest's folder) as JSON lines, atomically."""
    import os

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            _check_record(record, f"{path} record {record.get('id')!r}")
            f.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, path)


def tokenize_records(
    records: Sequence[dict[str, Any]], model, feature_extractor, batch_size: int = 16, progress: bool = False
) -> list[dict[str, Any]]:
    """Records -> spoken QA items (`story_speech`: one speech-id list per sentence, `question_speech`, and
    `story`/`question` text when the record has it), encoding each distinct audio file once."""
    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms

    paths = sorted({p for r in records for p in [*r["context_audio"], r["question_audio"]]})
    waves = [load_audio(p) for p in paths]
    codes = dict(zip(paths, encode_waveforms(model, feature_extractor, waves, batch_size, progress=progress)))
    empty = [p for p, c in codes.items() if not c]
    if empty:
        raise ValueError(f"audio too short to give one speech token: {empty[:3]}")
    items = []
    for r in records:
        item = {
            "id": str(r["id"]),
            "task": int(r["task"]),
            "answer": r["answer"],
            "voice": str(r.get("voice") or ""),
            "story_speech": [codes[p] for p in r["context_audio"]],
            "question_speech": codes[r["question_audio"]],
        }
        if r.get("context") is not None and r.get("question") is not None:
            item["story"] = "\n".join(s.strip() for s in r["context"])
            item["question"] = str(r["question"]).strip()
        items.append(item)
    return items


def load_spoken_qa(folder: str | Path) -> dict[str, Any]:
    """A folder of the `spoken_qa` stage -> `{"items": {voice set: [items]}, "answer_sets": {task: [answers]},
    "answer_speech": {voice: {answer: speech ids}}}` (the tokenized set; the manifests beside it are the audio)."""
    from datasets import load_from_disk

    folder = Path(folder)
    if not (folder / "dataset").is_dir():
        raise FileNotFoundError(f"{folder}: no spoken QA dataset here (run the spoken_qa stage first)")
    dd = load_from_disk(str(folder / "dataset"))
    return {
        "items": {s: list(dd[s]) for s in dd},
        "answer_sets": {int(t): a for t, a in json.loads((folder / "answer_sets.json").read_text()).items()},
        "answer_speech": json.loads((folder / "answer_speech.json").read_text()),
    }


__all__ = ["REQUIRED", "load_spoken_qa", "read_manifest", "tokenize_records", "write_manifest"]

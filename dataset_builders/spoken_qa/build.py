"""Spoken bAbI test questions: choose them, speak them (resumable shards), write manifests, tokenize.

Output folder:
  audio/<hash>.flac             one file per distinct (voice, text): sentences, questions, answer candidates
  <voice set>/manifest.jsonl    the user-facing format of `modeling_speechtext.evaluation.spoken_qa_data`
  answers.jsonl                 {voice, answer, audio}: every answer of the task's set in every telling voice
  answer_sets.json              {task: [answers]}: the candidates of likelihood ranking (train answers)
  dataset/                      DatasetDict seen_voices / unseen_voices: the items with their speech ids
  answer_speech.json            {voice: {answer: speech ids}}
  stats.json
Synthesis reuses the speech corpus's shard machinery (`shards/`, removed at the end), so a crash resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..speech_corpus.build import POST_KEYS
from ..speech_corpus.config import SpeechCorpusConfig
from ..speech_corpus.resume import SHARD_FOLDER, plan_fingerprint, prepare_shards, write_json_atomic
from ..speech_corpus.shards import run_shards
from .config import VOICE_SETS, SpokenQAConfig

logger = logging.getLogger(__name__)


def story_id(row_id: str) -> str:
    """`qa1-test-0000-03` -> `qa1-test-0000`: the questions of one bAbI story share it."""
    return row_id.rsplit("-", 1)[0]


def choose_questions(rows: list[dict], cfg: SpokenQAConfig) -> dict[str, list[dict]]:
    """Per voice set, `questions_per_task` test questions of each task, story-disjoint between the sets."""
    rng = np.random.default_rng([cfg.seed, 11])
    out: dict[str, list[dict]] = {s: [] for s in VOICE_SETS}
    for task in cfg.tasks:
        stories: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            if int(r["task"]) == int(task):
                stories[story_id(r["id"])].append(r)
        if not stories:
            raise ValueError(f"spoken_qa: no test question of bAbI task {task} in the QA data")
        order = [sorted(stories)[i] for i in rng.permutation(len(stories))]
        taken = {s: 0 for s in VOICE_SETS}
        for k, sid in enumerate(order):
            vset = VOICE_SETS[k % 2] if all(taken[s] < cfg.questions_per_task for s in VOICE_SETS) else min(
                VOICE_SETS, key=taken.get)  # fmt: skip
            if taken[vset] >= cfg.questions_per_task:
                break
            qs = stories[sid]
            pick = sorted(rng.choice(len(qs), size=min(cfg.questions_per_story, len(qs)), replace=False))
            for i in pick[: cfg.questions_per_task - taken[vset]]:
                out[vset].append(qs[int(i)])
                taken[vset] += 1
        short = {s: n for s, n in taken.items() if n < cfg.questions_per_task}
        if short:
            logger.warning("spoken_qa: task %s has only %s questions (asked %d)", task, short, cfg.questions_per_task)
    return out


def _audio_name(voice: str, text: str) -> str:
    return hashlib.sha1(f"{voice}\n{text}".encode()).hexdigest()[:16] + ".flac"


def plan(questions: dict[str, list[dict]], voices: dict[str, list[str]], answer_sets: dict[int, list[str]], seed: int):
    """Voice per story (seeded), the records of each manifest, and the synthesis jobs (one per distinct audio)."""
    rng = np.random.default_rng([seed, 12])
    records: dict[str, list[dict]] = {}
    answers: list[dict] = []
    jobs: dict[str, dict[str, dict]] = {s: {} for s in VOICE_SETS}

    def job(vset: str, voice: str, text: str) -> str:
        """The audio file (relative to the output folder) of `text` in `voice`, planned once."""
        name = _audio_name(voice, text)
        jobs[vset].setdefault(name, {"id": name[:-5], "text": text, "voice": voice, "rate": 1.0, "pitch": 1.0,
                                     "speed": 1.0})  # fmt: skip
        return f"audio/{name}"

    for vset in VOICE_SETS:
        teller: dict[str, str] = {}
        spoken_answers: set[tuple[str, int]] = set()
        records[vset] = []
        for r in questions[vset]:
            sid = story_id(r["id"])
            if sid not in teller:
                teller[sid] = voices[vset][int(rng.integers(len(voices[vset])))]
            voice = teller[sid]
            sentences = [s.strip() for s in r["story"].split("\n") if s.strip()]
            records[vset].append({
                "id": r["id"], "task": int(r["task"]), "answer": r["answer"], "voice": voice,
                "context": sentences, "question": r["question"].strip(),
                "context_audio": [f"../{job(vset, voice, s)}" for s in sentences],  # relative to <vset>/
                "question_audio": f"../{job(vset, voice, r['question'].strip())}",
            })  # fmt: skip
            if (voice, int(r["task"])) not in spoken_answers:
                spoken_answers.add((voice, int(r["task"])))
                for a in answer_sets[int(r["task"])]:
                    answers.append({"voice": voice, "answer": a, "audio": job(vset, voice, f"{a}.")})
    unique_answers = list({(a["voice"], a["answer"]): a for a in answers}.values())
    return records, unique_answers, {s: list(j.values()) for s, j in jobs.items()}


def synthesize(jobs: dict[str, list[dict]], output_dir: Path, cfg: SpokenQAConfig) -> dict[str, Any]:
    """Speak every job into `audio/` through the speech corpus's resumable shards; returns synthesis stats."""
    import pyarrow.parquet as pq

    corpus_cfg = SpeechCorpusConfig(shard_size=cfg.shard_size, num_proc=cfg.num_proc, min_seconds=0.1)
    post = {k: getattr(corpus_cfg, k) for k in POST_KEYS}
    fingerprint = plan_fingerprint(jobs, corpus_cfg, post)
    writers, tasks = prepare_shards(jobs, corpus_cfg, post, output_dir, fingerprint)
    pending = [t for t in tasks if not t["writer"].done(t["shard"])]
    run_stats, wall = run_shards(pending, cfg.num_proc, len(tasks) - len(pending), len(tasks))
    audio_dir = output_dir / "audio"
    audio_dir.mkdir(exist_ok=True)
    dropped, seconds = [], 0.0
    for writer in writers.values():
        for k in range(writer.num_shards):  # the shards hold FLAC bytes already: written out as they are
            for row in pq.read_table(writer.path(k), columns=["id", "audio", "duration"]).to_pylist():
                (audio_dir / f"{row['id']}.flac").write_bytes(row["audio"]["bytes"])
                seconds += row["duration"]
        for s in writer.read_stats():
            dropped += s.get("dropped", [])
    return {"utterances": sum(len(j) for j in jobs.values()), "audio_seconds": round(seconds, 1),
            "synthesis_wall_seconds": round(wall, 1), "dropped": dropped, "fingerprint": fingerprint}  # fmt: skip


def build_spoken_qa(qa, speech_tokenizer: str | Path, output_dir: str | Path, cfg: SpokenQAConfig,
                    voices: dict[str, list[str]]) -> dict[str, Any]:  # fmt: skip
    """`qa`: DatasetDict with train (answer sets) and test (the questions). Returns the stats written."""
    from datasets import Dataset, DatasetDict, Features, List, Value

    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.evaluation.spoken_qa_data import read_manifest, tokenize_records, write_manifest
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms, load_speech_tokenizer

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    answer_sets: dict[int, list[str]] = {}
    for task, answer in zip(qa["train"]["task"], qa["train"]["answer"]):
        if int(task) in cfg.tasks:
            answer_sets.setdefault(int(task), set()).add(answer.strip())
    answer_sets = {t: sorted(a) for t, a in sorted(answer_sets.items())}
    missing = [t for t in cfg.tasks if t not in answer_sets]
    if missing:
        raise ValueError(f"spoken_qa: bAbI task(s) {missing} have no train answers to rank against")
    questions = choose_questions(list(qa["test"]), cfg)
    records, answers, jobs = plan(questions, voices, answer_sets, cfg.seed)
    synth = synthesize(jobs, output_dir, cfg)
    lost = {d["id"] for d in synth["dropped"]}
    if any(Path(a["audio"]).stem in lost for a in answers):  # before any tokenizing: ranking needs every one
        raise RuntimeError("spoken_qa: an answer candidate could not be synthesized: ranking needs every one")
    model, fe = load_speech_tokenizer(speech_tokenizer)
    features = Features({
        "id": Value("string"), "task": Value("int32"), "answer": Value("string"), "voice": Value("string"),
        "story": Value("string"), "question": Value("string"), "story_speech": List(List(Value("int32"))),
        "question_speech": List(Value("int32")),
    })  # fmt: skip
    splits, counts = {}, {}
    for vset in VOICE_SETS:
        keep = [r for r in records[vset] if not {Path(p).stem for p in [*r["context_audio"], r["question_audio"]]} & lost]
        if len(keep) < len(records[vset]):
            logger.warning("spoken_qa: %s: %d questions lost audio in synthesis", vset, len(records[vset]) - len(keep))
        (output_dir / vset).mkdir(exist_ok=True)
        write_manifest(output_dir / vset / "manifest.jsonl", keep)
        items = tokenize_records(read_manifest(output_dir / vset / "manifest.jsonl"), model, fe, cfg.batch_size)
        splits[vset] = Dataset.from_list(items, features=features)
        counts[vset] = {str(t): sum(1 for it in items if it["task"] == t) for t in cfg.tasks}
    dataset_dir = output_dir / "dataset"
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    DatasetDict(splits).save_to_disk(str(dataset_dir))
    with (output_dir / "answers.jsonl").open("w") as f:
        f.writelines(json.dumps(a, sort_keys=True) + "\n" for a in answers)
    codes = encode_waveforms(model, fe, [load_audio(output_dir / a["audio"]) for a in answers], cfg.batch_size)
    answer_speech: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for a, c in zip(answers, codes):
        if not c:
            raise ValueError(f"spoken_qa: the answer {a['answer']!r} in {a['voice']} encodes to no speech token")
        answer_speech[a["voice"]][a["answer"]] = c
    write_json_atomic(output_dir / "answer_speech.json", answer_speech, sort_keys=True)
    write_json_atomic(output_dir / "answer_sets.json", {str(t): a for t, a in answer_sets.items()}, indent=1)
    shutil.rmtree(output_dir / SHARD_FOLDER, ignore_errors=True)
    stats = {"questions": counts, "voices": voices, "tasks": list(cfg.tasks),
             "answer_set_sizes": {str(t): len(a) for t, a in answer_sets.items()},
             **{k: v for k, v in synth.items() if k != "dropped"}, "dropped": len(synth["dropped"]),
             "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    write_json_atomic(output_dir / "stats.json", stats, indent=2, sort_keys=True)
    return stats


__all__ = ["build_spoken_qa", "choose_questions", "plan", "story_id", "synthesize"]

"""Spoken dialogues: plan them (bAbI stories; open QA, `open_qa.py`), speak the user turns, tokenize, give the
assistant speech.

Output folder:
  data/<split>-00000-of-00001.parquet   one row per dialogue (the neutral form of modeling_speechtext/data/dialogue.py)
  README.md                             dataset card (`configs:` points `load_dataset` at the Parquet files)
  stats.json
User audio is synthesized through the speech corpus's resumable shards (the `spoken_qa` machinery: one file per
distinct voice x sentence, so a story's repeated sentences cost nothing), then encoded by the speech tokenizer;
the assistant's speech tokens come from the text-to-token model, one synthesis per distinct answer sentence.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..speech_corpus.resume import SHARD_FOLDER, write_json_atomic
from ..spoken_qa.build import _audio_name, story_id, synthesize
from .config import DialogueConfig
from .open_qa import load_open_qa, plan_open_dialogues

logger = logging.getLogger(__name__)

_WHERE = re.compile(r"^Where is (\w+)\?$")
_WHERE_BEFORE = re.compile(r"^Where was (\w+) before the (\w+)\?$")
_IS_IN = re.compile(r"^Is (\w+) in the (\w+)\?$")


def answer_sentence(question: str, answer: str) -> str:
    """The assistant's short full-sentence answer ("Mary is in the kitchen."), from bAbI's question forms; a
    question form not known here gets the answer word as a sentence of its own."""
    q, a = question.strip(), answer.strip()
    if m := _WHERE.match(q):
        return f"{m.group(1)} is in the {a}."
    if m := _WHERE_BEFORE.match(q):
        return f"{m.group(1)} was in the {a} before the {m.group(2)}."
    if m := _IS_IN.match(q):
        if a.lower() == "yes":
            return f"Yes, {m.group(1)} is in the {m.group(2)}."
        if a.lower() == "no":
            return f"No, {m.group(1)} is not in the {m.group(2)}."
        return f"Maybe {m.group(1)} is in the {m.group(2)}."
    return a[:1].upper() + a[1:] + "."


def plan_dialogues(rows: list[dict], n: int, cfg: DialogueConfig, voices: list[str], salt: int) -> list[dict]:
    """Up to `n` dialogues, one per story (seeded): each turn tells the sentences since the last question, then
    asks the next one. `user_sentences` per turn is what gets spoken."""
    rng = np.random.default_rng([cfg.seed, 21, salt])
    stories: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if int(r["task"]) in cfg.tasks:
            stories[story_id(r["id"])].append(r)
    names = sorted(stories)
    order = [names[i] for i in rng.permutation(len(names))][:n]
    out = []
    for sid in order:
        questions = sorted(stories[sid], key=lambda r: r["id"])
        if rng.random() < cfg.single_turn_fraction:
            chosen = [questions[int(rng.integers(len(questions)))]]
        else:
            chosen = questions[: int(rng.integers(1, min(cfg.max_turns, len(questions)) + 1))]
        told, turns = 0, []
        for q in chosen:
            story = [s.strip() for s in q["story"].split("\n") if s.strip()]
            sentences = story[told:] + [q["question"].strip()]
            told = len(story)
            turns.append({"user_sentences": sentences, "user_text": "\n".join(sentences), "answer": q["answer"].strip(),
                          "assistant_text": answer_sentence(q["question"], q["answer"])})  # fmt: skip
        out.append({"id": sid, "task": int(questions[0]["task"]), "source": "babi",
                    "voice": voices[int(rng.integers(len(voices)))],
                    "user_modality": "text" if rng.random() < cfg.text_user_fraction else "speech", "turns": turns})  # fmt: skip
    return out


def plan_open_qa(dialogues: dict[str, list[dict]], cfg: DialogueConfig, voices: list[str]) -> dict[str, dict]:
    """Append the config's open-vocabulary one-turn exchanges to `dialogues` (per split); returns the counts
    planned per source and split (fewer than asked where a source has fewer usable questions)."""
    from modeling_speechtext.paths import resolve_data_path

    planned: dict[str, dict] = {}
    if not cfg.open_qa:
        return planned
    root = resolve_data_path(cfg.open_qa_dir)
    for source, counts in sorted(cfg.open_qa.items()):
        rows = load_open_qa(root, source, cfg.seed, cfg.open_qa_validation_fraction)
        planned[source] = {}
        for split, n in sorted(counts.items()):
            if not n:
                continue
            # seeded by the source's name and split, not its position: adding a source leaves the others' draws
            rng = np.random.default_rng([cfg.seed, 23, zlib.crc32(f"{source}/{split}".encode())])
            plan = plan_open_dialogues(rows[split], int(n), voices, rng, cfg.text_user_fraction)
            if not plan:
                raise ValueError(f"dialogue: open QA source {source!r} has no usable {split} question")
            dialogues.setdefault(split, []).extend(plan)
            planned[source][split] = len(plan)
    return planned


def speak_user_turns(dialogues: dict[str, list[dict]], output_dir: Path, cfg: DialogueConfig, speech_tokenizer):
    """Synthesize every distinct (voice, sentence) of the spoken dialogues, encode it, and fill `user_speech`
    (the turn's sentences' tokens, concatenated). Dialogues that lost a sentence in synthesis are dropped."""
    from modeling_speechtext.audio import load_audio
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms, load_speech_tokenizer

    jobs: dict[str, dict] = {}
    for rows in dialogues.values():
        for d in rows:
            for turn in d["turns"] if d["user_modality"] == "speech" else []:
                for s in turn["user_sentences"]:
                    name = _audio_name(d["voice"], s)
                    jobs.setdefault(name, {"id": name[:-5], "text": s, "voice": d["voice"], "rate": 1.0, "pitch": 1.0,
                                           "speed": 1.0})  # fmt: skip
    synth = synthesize({"user": list(jobs.values())}, output_dir, cfg) if jobs else {"dropped": [], "audio_seconds": 0}
    lost = {x["id"] for x in synth["dropped"]}
    names = [n for n in jobs if n[:-5] not in lost]
    model, fe = load_speech_tokenizer(speech_tokenizer)
    codes = encode_waveforms(model, fe, [load_audio(output_dir / "audio" / n) for n in names], cfg.batch_size,
                             progress=True)  # fmt: skip
    ids = dict(zip(names, codes))
    dropped = 0
    for split, rows in dialogues.items():
        kept = []
        for d in rows:
            if d["user_modality"] == "speech":
                pieces = [[ids.get(_audio_name(d["voice"], s)) for s in t["user_sentences"]] for t in d["turns"]]
                if any(p is None or not p for turn in pieces for p in turn):
                    dropped += 1
                    continue
                for turn, p in zip(d["turns"], pieces):
                    turn["user_speech"] = [x for piece in p for x in piece]
            else:
                for turn in d["turns"]:
                    turn["user_speech"] = []
            kept.append(d)
        dialogues[split] = kept
    return {"user_utterances": len(jobs), "user_audio_seconds": round(synth.get("audio_seconds", 0.0), 1),
            "synthesis_dropped": len(lost), "dialogues_dropped": dropped}  # fmt: skip


def speak_assistant_turns(dialogues: dict[str, list[dict]], text_to_token, batch_size: int) -> dict[str, Any]:
    """Speech tokens of every distinct answer sentence from the text-to-token model (its voice is the decoder's)."""
    from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer

    synth = TextToTokenSynthesizer.from_pretrained(text_to_token)
    sentences = sorted({t["assistant_text"] for rows in dialogues.values() for d in rows for t in d["turns"]})
    out = synth.synthesize(sentences, batch_size=batch_size, return_dict=True, progress=True)
    speech = {t: s for t, s, cut in zip(sentences, out.speech_ids, out.truncated) if not cut and s}
    dropped = 0
    for split, rows in dialogues.items():
        # a runaway (cut at its token budget) is babble, not the sentence: no dialogue trains on it
        kept = [d for d in rows if all(t["assistant_text"] in speech for t in d["turns"])]
        dropped += len(rows) - len(kept)
        for d in kept:
            for turn in d["turns"]:
                turn["assistant_speech"] = speech[turn["assistant_text"]]
        dialogues[split] = kept
    return {"answer_sentences": len(sentences), "answer_runaways": int(sum(out.truncated)),
            "dialogues_dropped_runaway_answer": dropped,
            "answer_speech_tokens_mean": round(float(np.mean([len(s) for s in speech.values()])), 1)}  # fmt: skip


FEATURES_DOC = """| column | type | what |
|---|---|---|
| `id` | string | the bAbI story, or the open QA question's id |
| `task` | int32 | bAbI task (0 for open QA) |
| `source` | string | `babi`, `uscis_civics` or `webquestions` |
| `voice` | string | the user's TTS voice |
| `user_modality` | string | `speech` or `text` |
| `turns` | list | `user_text`, `user_speech` (speech tokenizer ids), `answer` (bAbI's word, or the QA answer said), `assistant_text` (full sentence), `assistant_speech` (text-to-token ids) |
"""


def dialogue_card(stats: dict[str, Any], folder: Path):
    from huggingface_hub import DatasetCard, DatasetCardData

    from modeling_speechtext.hub.dataset_cards import parquet_dataset_info

    sources = stats["dialogues_by_source"]
    data = DatasetCardData(
        dataset_info=parquet_dataset_info(folder, stats["dialogues"]),
        language=["en"], license="other", tags=["speechtext", "spoken-dialogue", "speech-tokens", *sorted(sources)],
        task_categories=["text-generation"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in stats["dialogues"]]}],
    )  # fmt: skip
    kinds = []
    if "babi" in sources:
        kinds.append("bAbI stories told and asked about: a turn tells the story sentences since the last question and "
                     "asks the next one, so later answers need earlier turns")  # fmt: skip
    if set(sources) - {"babi"}:
        kinds.append("one-turn open-vocabulary questions (" + ", ".join(sorted(set(sources) - {"babi"})) + ") answered "
                     "in a sentence made from the question and its answer (`dataset_builders/dialogue/open_qa.py`)")  # fmt: skip
    body = f"""# speechtext spoken dialogues

User turns: spoken by offline TTS voices ({len(stats["voices"])} voices, none of the held-out ones) and encoded by
the speech tokenizer, or text for {stats["text_user_share"]:.0%} of the dialogues. Assistant turns: a short full
sentence as text and as speech tokens of the text-to-token model. Dialogues: {"; ".join(kinds)}. Train on it with
`recipes/sft_dialogue.py` (streaming thoughts: `modeling_speechtext/data/dialogue.py`).

Dialogues per split: {json.dumps(stats["dialogues"])}; by source: {json.dumps(sources)}; turns per dialogue (mean):
{stats["turns_mean"]}.

{FEATURES_DOC}"""
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def build_dialogues(qa, output_dir: str | Path, cfg: DialogueConfig, voices: list[str], speech_tokenizer,
                    text_to_token) -> dict[str, Any]:  # fmt: skip
    """`qa`: DatasetDict with `train` (+ `validation`) bAbI question rows (None when `cfg.tasks` is empty: open QA
    only). Returns the stats written."""
    from datasets import Dataset, Features, List, Value

    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not voices:
        raise ValueError("dialogue: no user voices")
    dialogues: dict[str, list[dict]] = {}
    for k, (split, n) in enumerate(sorted(cfg.dialogues.items()) if cfg.tasks else []):
        if n and (qa is None or split not in qa):
            raise ValueError(f"dialogue: {n} {split} dialogues asked for, but the QA data has no {split} split")
        if n:
            dialogues[split] = plan_dialogues(list(qa[split]), int(n), cfg, voices, salt=k)
            if not dialogues[split]:
                raise ValueError(f"dialogue: no bAbI story of tasks {cfg.tasks} in the {split} QA rows")
    open_counts = plan_open_qa(dialogues, cfg, voices)
    user = speak_user_turns(dialogues, output_dir, cfg, speech_tokenizer)
    assistant = speak_assistant_turns(dialogues, text_to_token, cfg.batch_size)
    turn = {"user_text": Value("string"), "user_speech": List(Value("int32")), "answer": Value("string"),
            "assistant_text": Value("string"), "assistant_speech": List(Value("int32"))}  # fmt: skip
    features = Features({"id": Value("string"), "task": Value("int32"), "source": Value("string"), "voice": Value("string"),
                         "user_modality": Value("string"), "turns": List(turn)})  # fmt: skip
    data_dir = output_dir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir()
    for split, rows in dialogues.items():
        for d in rows:
            for t in d["turns"]:
                t.pop("user_sentences", None)
        Dataset.from_list(rows, features=features).to_parquet(str(data_dir / f"{split}-00000-of-00001.parquet"))
    empty = [s for s, rows in dialogues.items() if not rows]
    if empty:
        raise RuntimeError(f"dialogue: no dialogue left in split(s) {empty} after synthesis (see the dropped counts)")
    everything = [d for rows in dialogues.values() for d in rows]
    sources = sorted({d["source"] for d in everything})
    stats = {"dialogues": {s: len(r) for s, r in dialogues.items()}, "voices": voices, "tasks": list(cfg.tasks),
             "dialogues_by_source": {src: {s: sum(d["source"] == src for d in r) for s, r in dialogues.items()}
                                     for src in sources}, "open_qa_planned": open_counts,
             "turns_mean": round(float(np.mean([len(d["turns"]) for d in everything])), 2),
             "text_user_share": round(sum(d["user_modality"] == "text" for d in everything) / len(everything), 3),
             **user, **assistant, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    dialogue_card(stats, output_dir).save(str(output_dir / "README.md"))
    write_json_atomic(output_dir / "stats.json", stats, indent=2, sort_keys=True)
    shutil.rmtree(output_dir / SHARD_FOLDER, ignore_errors=True)
    if not cfg.keep_audio:
        shutil.rmtree(output_dir / "audio", ignore_errors=True)
    return stats


__all__ = ["answer_sentence", "build_dialogues", "plan_dialogues", "plan_open_qa", "speak_assistant_turns",
           "speak_user_turns"]

"""Spoken bAbI QA in four modalities with a speech-text LM: T->T, S->T, S->S, T->S (PAPER.md §6, issue 20).

An item has its story sentences and its question each as text *and* as speech ids (the speech tokenizer's
codes of real synthesized audio), and the answer as text. The prompt follows the layout the LM saw in
pretraining: sentences on their own lines; a spoken sentence is `<|begin_of_audio|> <|audio_i|>...
<|end_of_audio|>` in place of its words (as in the interleaved data at sentence granularity). Then:

* ->T: the answer as text, scored by likelihood ranking over the task's answer set and by free greedy
  generation in text-only mode (speech tokens and markers suppressed: after a question the LM may as well
  start speaking, and ->T asks for text) (`babi_qa`);
* ->S: the answer as speech. Ranking scores each candidate's *speech* continuation (`<|begin_of_audio|>` +
  the tokens of that answer spoken, + `<|end_of_audio|>`); generation forces `<|begin_of_audio|>`, decodes
  greedily until `<|end_of_audio|>`, and reads the result back with the speech tokenizer's ASR head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modeling_speechtext.evaluation.babi_qa import (
    answer_text,
    answers_match,
    greedy_continuations,
    rank_answers,
)
from modeling_speechtext.text_normalization import normalize_text

MODALITIES = ("T->T", "S->T", "S->S", "T->S")


def prompt_ids(sentences: Sequence[str | Sequence[int]], question: str | Sequence[int], tokenizer, vocab) -> list[int]:
    """Token ids of story + question, each part text (str) or speech ids (a sequence of ints), one per line."""
    ids: list[int] = []
    parts = [*sentences, question]
    for k, part in enumerate(parts):
        if k:
            ids += tokenizer("\n", add_special_tokens=False)["input_ids"]
        if isinstance(part, str):
            ids += tokenizer(part.strip(), add_special_tokens=False)["input_ids"]
        else:
            if len(part) == 0:
                raise ValueError("a spoken sentence with no speech tokens")
            ids += vocab.wrap(part)
    return ids


def spoken_qa_accuracy(
    model,
    tokenizer,
    vocab,
    items: Sequence[dict],
    answer_sets: dict[int, list[str]],
    modalities: Sequence[str] = ("T->T", "S->T"),
    answer_speech: dict[str, list[int]] | None = None,
    transcribe: Callable[[list[list[int]]], list[str]] | None = None,
    batch_size: int = 32,
    max_answer_speech_tokens: int = 40,
) -> dict[str, dict[int, dict[str, float]]]:
    """Accuracy per modality and task: `{"S->T": {1: {"ranked", "generated", "chance", "n"}}}`.

    Each item has `task`, `answer`, `story` (newline-joined text), `question` (text), `story_speech` (a list of
    speech-id lists, one per sentence) and `question_speech`. ->S modalities need `answer_speech` (answer text
    -> its speech ids, or voice -> that table, with the item's `voice` picking it, for ranking) and
    `transcribe` (speech ids -> text, for generation).
    """
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}: expected some of {MODALITIES}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    missing = sorted({it["task"] for it in items} - set(answer_sets))
    if missing:
        raise ValueError(f"no answer set for task(s) {missing}")
    # answer speech: {answer: ids}, or {voice: {answer: ids}} to rank candidates in the item's own voice
    per_voice = bool(answer_speech) and isinstance(next(iter(answer_speech.values())), dict)
    results: dict[str, dict[int, dict[str, float]]] = {}
    for modality in modalities:
        spoken_in, spoken_out = modality.startswith("S"), modality.endswith("S")
        if spoken_out and (answer_speech is None or transcribe is None):
            raise ValueError(f"{modality} needs answer_speech (for ranking) and transcribe (for generation)")
        prompts = []
        for item in items:
            if spoken_in:
                if len(item["story_speech"]) != len(item["story"].split("\n")):
                    raise ValueError(f"item {item.get('id')}: story_speech has not one entry per story sentence")
                prompts.append(prompt_ids(item["story_speech"], item["question_speech"], tokenizer, vocab))
            else:
                prompts.append(prompt_ids(item["story"].split("\n"), item["question"], tokenizer, vocab))

        def continuation(answer: str, voice: str, spoken_out: bool = spoken_out) -> list[int]:
            if not spoken_out:
                return tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"]
            table = answer_speech.get(voice, {}) if per_voice else answer_speech
            if answer not in table:
                raise ValueError(f"no speech for answer {answer!r}" + (f" in voice {voice!r}" if per_voice else ""))
            return vocab.wrap(table[answer])

        cands = [[continuation(a, it.get("voice", "")) for a in answer_sets[it["task"]]] for it in items]
        ranked = rank_answers(model, prompts, cands, pad, batch_size)
        if spoken_out:
            gen_prompts = [p + [vocab.begin_of_audio_id] for p in prompts]
            gen = greedy_continuations(model, gen_prompts, pad, max_answer_speech_tokens, batch_size)
            speech = [vocab.token_to_speech_ids(g[: g.index(vocab.end_of_audio_id)] if vocab.end_of_audio_id in g
                                                else g) for g in gen]  # fmt: skip
            heard = transcribe(speech)
            generated_ok = [normalize_text(h) == normalize_text(it["answer"]) for h, it in zip(heard, items)]
        else:
            speech_only = [*vocab.speech_token_range, vocab.begin_of_audio_id, vocab.end_of_audio_id]
            gen = greedy_continuations(model, prompts, pad, batch_size=batch_size, suppress_tokens=speech_only)
            texts = [tokenizer.decode(g, skip_special_tokens=True) for g in gen]
            generated_ok = [answers_match(t, it["answer"]) for t, it in zip(texts, items)]
        per_task = {}
        for task in sorted({it["task"] for it in items}):
            idx = [i for i, it in enumerate(items) if it["task"] == task]
            answers = answer_sets[task]
            ok = [normalize_text(answers[ranked[i]]) == normalize_text(items[i]["answer"]) for i in idx]
            per_task[task] = {
                "ranked": sum(ok) / len(idx),
                "generated": sum(generated_ok[i] for i in idx) / len(idx),
                "chance": 1.0 / len(answers),
                "n": len(idx),
            }
        results[modality] = per_task
    return results


__all__ = ["MODALITIES", "prompt_ids", "spoken_qa_accuracy"]

"""Spoken bAbI QA in four modalities with a speech-text LM: T->T, S->T, S->S, T->S (PAPER.md §6, issue 20).

An item has its story sentences and its question each as text *and* as speech ids (the speech tokenizer's
codes of real synthesized audio), and the answer as text. The prompt follows the layout the LM saw in
pretraining (`layout_ids`): text sentences on their own lines; spoken sentences in place of their words, with
consecutive spoken sentences one `<|begin_of_audio|> <|audio_i|>... <|end_of_audio|>` block, as an interleaved
span of several sentences is. Then:

* ->T: the answer as text, scored by likelihood ranking over the task's answer set and by free greedy
  generation in text-only mode (speech tokens and markers suppressed: after a question the LM may as well
  start speaking, and ->T asks for text) (`babi_qa`);
* ->S: the answer as speech. Ranking scores each candidate's *speech* continuation: after a spoken question
  inside the same open block (answer tokens + `<|end_of_audio|>`), after a text question as its own block;
  generation continues the open block (S->S) or forces `<|begin_of_audio|>` (T->S), decodes greedily, cuts at
  `<|end_of_audio|>`, and reads the result back with the speech tokenizer's ASR head.
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


def layout_ids(parts: Sequence[str | Sequence[int]], tokenizer, vocab, open_end: bool = False) -> list[int]:
    """Token ids of lines (text: str, speech: speech ids) laid out as the interleaved pretraining data lays them.

    The interleaved builder gives the whitespace before a span to the speech segment, which drops it, and a span
    of several sentences is one `<|begin_of_audio|>...<|end_of_audio|>` block: so a spoken line is *not*
    preceded by "\n", consecutive spoken lines share one block, and a text line after speech keeps its "\n"
    (`Mary went to the kitchen.<boa>...<eoa>\nJohn left.`). `open_end` leaves a final speech block open, for a
    spoken continuation of the same span.
    """
    segments: list[list] = []
    for k, part in enumerate(parts):
        if isinstance(part, str):
            segments.append(["text", ("\n" if k else "") + part.strip()])
        else:
            if len(part) == 0:
                raise ValueError("a spoken sentence with no speech tokens")
            if segments and segments[-1][0] == "speech":
                segments[-1][1] = segments[-1][1] + list(part)
            else:
                segments.append(["speech", list(part)])
    ids: list[int] = []
    for i, (kind, value) in enumerate(segments):
        if kind == "text":
            ids += tokenizer(value, add_special_tokens=False)["input_ids"]
        elif open_end and i == len(segments) - 1:
            ids += [vocab.begin_of_audio_id, *vocab.speech_to_token_ids(value)]
        else:
            ids += vocab.wrap(value)
    return ids


def spoken_continuation(speech_ids: Sequence[int], vocab, after_speech: bool) -> list[int]:
    """A spoken continuation: inside the open block after speech (ids + `<|end_of_audio|>`), else its own block."""
    if len(speech_ids) == 0:
        raise ValueError("a spoken continuation with no speech tokens")
    if after_speech:
        return [*vocab.speech_to_token_ids(speech_ids), vocab.end_of_audio_id]
    return vocab.wrap(speech_ids)


def prompt_ids(
    sentences: Sequence[str | Sequence[int]], question: str | Sequence[int], tokenizer, vocab, open_end: bool = False
) -> list[int]:
    """Token ids of story + question (each text or speech ids), in the interleaved layout (`layout_ids`)."""
    return layout_ids([*sentences, question], tokenizer, vocab, open_end)


def qa_sequences(item: dict, modality: str, tokenizer, vocab, answer_speech: Sequence[int] | None = None):
    """(prompt ids, continuation ids of the item's own answer) for one modality: what a model that has learnt
    the task from pretraining-shaped data continues with (used by the tests to teach one)."""
    spoken_in, spoken_out = modality.startswith("S"), modality.endswith("S")
    parts = ([*item["story_speech"], item["question_speech"]] if spoken_in
             else [*item["story"].split("\n"), item["question"]])  # fmt: skip
    prompt = layout_ids(parts, tokenizer, vocab, open_end=spoken_in and spoken_out)
    if not spoken_out:
        return prompt, tokenizer(answer_text(item["answer"]), add_special_tokens=False)["input_ids"]
    return prompt, spoken_continuation(answer_speech, vocab, after_speech=spoken_in)


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
                if "story" in item and len(item["story_speech"]) != len(item["story"].split("\n")):
                    raise ValueError(f"item {item.get('id')}: story_speech has not one entry per story sentence")
                parts = [*item["story_speech"], item["question_speech"]]
            else:
                if "story" not in item or "question" not in item:
                    raise ValueError(f"item {item.get('id')}: {modality} needs the story and question as text")
                parts = [*item["story"].split("\n"), item["question"]]
            prompts.append(layout_ids(parts, tokenizer, vocab, open_end=spoken_in and spoken_out))

        def continuation(answer: str, voice: str, spoken_out=spoken_out, spoken_in=spoken_in) -> list[int]:
            if not spoken_out:
                return tokenizer(answer_text(answer), add_special_tokens=False)["input_ids"]
            table = answer_speech.get(voice, {}) if per_voice else answer_speech
            if answer not in table:
                raise ValueError(f"no speech for answer {answer!r}" + (f" in voice {voice!r}" if per_voice else ""))
            return spoken_continuation(table[answer], vocab, after_speech=spoken_in)

        cands = [[continuation(a, it.get("voice", "")) for a in answer_sets[it["task"]]] for it in items]
        ranked = rank_answers(model, prompts, cands, pad, batch_size)
        if spoken_out:
            from modeling_speechtext.evaluation.lm_transcription import speak

            gen_prompts = prompts if spoken_in else [p + [vocab.begin_of_audio_id] for p in prompts]  # block open
            speech, _ = speak(model, gen_prompts, vocab, pad, max_answer_speech_tokens, batch_size)
            heard = transcribe(speech)
            generated_ok = [answers_match(h, it["answer"]) for h, it in zip(heard, items)]
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


__all__ = ["MODALITIES", "layout_ids", "prompt_ids", "qa_sequences", "spoken_continuation", "spoken_qa_accuracy"]

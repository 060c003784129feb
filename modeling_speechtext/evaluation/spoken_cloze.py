"""Spoken story cloze: does the LM pick a story's real last sentence over another story's, from text or speech?

This is the StoryCloze / spoken StoryCloze analogue for the project's stories (bAbI-style documents, a sentence
per line). An item is a story's first n-1 sentences (the context) and two candidate endings; the LM scores each
ending as the continuation after the context and a newline, and is right when the true ending scores higher.

Distractor design (why it measures use of the context and nothing else):

* stories are paired two by two, and partners come from DIFFERENT tasks wherever the task counts allow it
  (the pairing is greedy from the two largest task groups, shuffled with `seed`, so it is deterministic); a
  cross-task distractor differs from the story in its people, places and style, so the context decides;
* the pair swaps endings: item A = (context A; ending A true, ending B distractor) and item B = (context B;
  ending B true, ending A distractor). Every ending is the true one once and the distractor once, so a model
  that ignores the context, however well it knows which sentences are likely, scores exactly 50%: no ending
  wins by being "just more probable". The task is impossible without the story and possible with it;
* `context_free_accuracy` checks exactly that: each ending scored after an end-of-text-only prompt must come out
  0.5 (ties count half). Each distinct (prompt, ending) is scored once and the score reused, so the two items
  of a pair compare bitwise-identical numbers. A value other than 0.5 means the items are not whole pairs.

With an odd number of stories the one left over is dropped (a 3-cycle of endings would not be exactly 50%
without the context). Modalities are `"C->E"`: C the context's modality, E the ending's, laid out as the interleaved
pretraining data are (`cloze_sequences`, `spoken_qa.layout_ids`).
Scores are the summed log-probability of the ending, and (`accuracy_mean_logprob`) the per-token mean, because
the two endings differ in length and the sum favours short ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from modeling_speechtext.evaluation.babi_qa import continuation_logprobs
from modeling_speechtext.evaluation.spoken_qa import layout_ids, spoken_continuation

MODALITIES = ("T->T", "S->T", "S->S", "T->S")
CHANCE = 0.5


def _check_story(story: dict) -> None:
    sid = story.get("id")
    sentences, speech = story.get("sentences"), story.get("speech")
    if not isinstance(sentences, (list, tuple)) or len(sentences) < 2:
        raise ValueError(f"story {sid!r}: needs at least 2 sentences (a context and an ending)")
    if any(not isinstance(s, str) or not s.strip() for s in sentences):
        raise ValueError(f"story {sid!r}: every sentence must be non-empty text")
    if speech is None or len(speech) != len(sentences):
        raise ValueError(f"story {sid!r}: `speech` must hold one speech-id list per sentence")
    if any(len(s) == 0 for s in speech):
        raise ValueError(f"story {sid!r}: a spoken sentence with no speech tokens")


def pair_stories(stories: Sequence[dict], seed: int = 0) -> list[tuple[dict, dict]]:
    """Stories two by two, partners from different tasks where possible; an odd one out is dropped.

    Always drawing from the two largest remaining task groups leaves same-task pairs only when one task holds
    more than half of the stories that are left, i.e. only where a cross-task partner cannot exist.
    """
    rng = random.Random(seed)
    groups: dict = {}
    for story in stories:
        groups.setdefault(story["task"], []).append(story)
    tasks = list(groups)
    rng.shuffle(tasks)
    rank = {t: k for k, t in enumerate(tasks)}  # ties between equal-sized groups, without comparing task values
    for t in tasks:
        rng.shuffle(groups[t])
    pairs = []
    while True:
        live = sorted((t for t in tasks if groups[t]), key=lambda t: (-len(groups[t]), rank[t]))
        if len(live) >= 2:
            pairs.append((groups[live[0]].pop(), groups[live[1]].pop()))
        elif live and len(groups[live[0]]) >= 2:
            pairs.append((groups[live[0]].pop(), groups[live[0]].pop()))
        else:
            return pairs


def _item(story: dict, partner: dict) -> dict:
    return {
        "id": story["id"],
        "task": story["task"],
        "partner": partner["id"],
        "distractor_task": partner["task"],
        "context": [s.strip() for s in story["sentences"][:-1]],
        "context_speech": [list(s) for s in story["speech"][:-1]],
        "ending": story["sentences"][-1].strip(),
        "ending_speech": list(story["speech"][-1]),
        "distractor": partner["sentences"][-1].strip(),
        "distractor_speech": list(partner["speech"][-1]),
    }


def cloze_items(stories: Sequence[dict], seed: int = 0) -> list[dict]:
    """Cloze items from stories with `id`, `task`, `sentences` (text) and `speech` (speech ids per sentence).

    Returns two items per pair (see the module docstring), each with `id`, `task`, `partner`,
    `distractor_task`, `context` / `context_speech` (the first n-1 sentences), `ending` / `ending_speech` (the
    story's last sentence) and `distractor` / `distractor_speech` (the partner's last sentence).
    """
    seen = set()
    for story in stories:
        _check_story(story)
        if story["id"] in seen:
            raise ValueError(f"story id {story['id']!r} appears twice")
        seen.add(story["id"])
    items = []
    for a, b in pair_stories(stories, seed):
        items += [_item(a, b), _item(b, a)]
    return items


def _credit(true_score: float, distractor_score: float) -> float:
    """1 for a win, 0.5 for a tie (so the context-free control is exactly 0.5 even when endings tie), 0 else."""
    return 1.0 if true_score > distractor_score else 0.5 if true_score == distractor_score else 0.0


def _unique_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad: int, batch_size: int) -> list[float]:
    """`continuation_logprobs` with each distinct pair scored once: a repeated pair gets the very same float."""
    keys = [(tuple(p), tuple(c)) for p, c in pairs]
    distinct = list(dict.fromkeys(keys))
    scores = continuation_logprobs(model, [(list(p), list(c)) for p, c in distinct], pad, batch_size)
    by_key = dict(zip(distinct, scores))
    return [by_key[k] for k in keys]


def _accuracies(scores: list[float], lengths: list[int]) -> tuple[float, float]:
    """(summed, length-normalised) accuracy over consecutive (true, distractor) score pairs."""
    n = len(scores) // 2
    summed = sum(_credit(scores[2 * i], scores[2 * i + 1]) for i in range(n)) / n
    means = [s / max(length, 1) for s, length in zip(scores, lengths)]
    mean = sum(_credit(means[2 * i], means[2 * i + 1]) for i in range(n)) / n
    return summed, mean


def newline_free(tokenizer) -> int:
    """The one-token prompt of the context-free control: the end-of-text token (a document boundary)."""
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id


def cloze_sequences(item: dict, modality: str, tokenizer, vocab) -> tuple[list[int], list[int], list[int]]:
    """(prompt, true ending, distractor) ids in the interleaved layout (`spoken_qa.layout_ids`): a text ending is
    a new line; a spoken ending after a spoken context continues its open block, after a text context it is its
    own block."""
    spoken_context, spoken_ending = modality.startswith("S"), modality.endswith("S")
    context = item["context_speech"] if spoken_context else item["context"]
    prompt = layout_ids(context, tokenizer, vocab, open_end=spoken_context and spoken_ending)

    def ending(which: str) -> list[int]:
        if spoken_ending:
            if not item[f"{which}_speech"]:
                raise ValueError(f"item {item['id']!r}: the {which} has no speech tokens")
            return spoken_continuation(item[f"{which}_speech"], vocab, after_speech=spoken_context)
        return tokenizer("\n" + item[which].strip(), add_special_tokens=False)["input_ids"]

    return prompt, ending("ending"), ending("distractor")


def cloze_accuracy(
    model,
    tokenizer,
    vocab,
    items: Sequence[dict],
    modalities: Sequence[str] = ("T->T", "S->T", "S->S"),
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Accuracy per modality: `{"S->T": {"accuracy", "accuracy_mean_logprob", "context_free_accuracy",
    "context_free_accuracy_mean_logprob", "n", "chance"}}`.

    `items` come from `cloze_items`. The context-free numbers are the sanity check of the design: they are 0.5
    for any model when `items` are whole pairs (as `cloze_items` makes them).
    """
    unknown = set(modalities) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}: expected some of {MODALITIES}")
    if not items:
        raise ValueError("cloze_accuracy: no items (cloze_items needs at least 2 stories)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: dict[str, dict[str, float]] = {}
    for modality in modalities:
        spoken_context, spoken_ending = modality.startswith("S"), modality.endswith("S")

        pairs, free_pairs, lengths = [], [], []
        for item in items:
            prompt, true_ids, distractor_ids = cloze_sequences(item, modality, tokenizer, vocab)
            # context-free control: the same continuations after a prompt that says nothing of the story
            free = [vocab.begin_of_audio_id] if spoken_context and spoken_ending else [newline_free(tokenizer)]
            for cont in (true_ids, distractor_ids):
                pairs.append((prompt, cont))
                free_pairs.append((free, cont))
                lengths.append(len(cont))
        scores = _unique_logprobs(model, pairs + free_pairs, pad, batch_size)
        accuracy, accuracy_mean = _accuracies(scores[: len(pairs)], lengths)
        free, free_mean = _accuracies(scores[len(pairs) :], lengths)
        results[modality] = {
            "accuracy": accuracy,
            "accuracy_mean_logprob": accuracy_mean,
            "context_free_accuracy": free,
            "context_free_accuracy_mean_logprob": free_mean,
            "n": len(items),
            "chance": CHANCE,
        }
    return results


__all__ = ["CHANCE", "MODALITIES", "cloze_accuracy", "cloze_items", "cloze_sequences", "pair_stories"]

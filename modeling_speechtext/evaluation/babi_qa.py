"""bAbI question answering with a causal LM, by likelihood ranking and by free greedy generation.

The prompt is what a document of the text corpus looks like just before an answer: the story (a sentence
per line), then the question, then the answer and a period (`Where is Mary? bathroom.`). Everything here
works on token ids, so the same scorer serves text prompts (T->T) and prompts whose story or question are
speech tokens (S->T): the caller builds the ids.

* ranking: the answer is the candidate (of the task's answer set) with the highest summed log-probability of
  its tokens after the prompt; chance is 1 / the number of candidates.
* generation: greedy decoding of a few tokens, cut at the first period or line end, compared with the answer
  on the scoring normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modeling_speechtext.text_normalization import normalize_text


def qa_prompt(story: str, question: str) -> str:
    """The text before the answer, as the corpus writes it (`story` is newline-joined sentences)."""
    return f"{story.strip()}\n{question.strip()}" if story.strip() else question.strip()


def answer_text(answer: str) -> str:
    """The continuation scored for an answer: a space, the answer, the period that ends the QA line."""
    return f" {answer.strip()}."


def _model_device_dtype(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def continuation_logprobs(
    model, pairs: Sequence[tuple[list[int], list[int]]], pad_token_id: int, batch_size: int = 32
) -> list[float]:
    """Summed log p(continuation | prompt) for each (prompt ids, continuation ids) pair, batched.

    Right padding: positions are the same as unpadded, so the scores equal those of one-by-one scoring.
    """
    device = _model_device_dtype(model)
    scores: list[float] = []
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # little padding
    by_index: dict[int, float] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
        if any(not pairs[i][1] or not pairs[i][0] for i in chunk):
            raise ValueError("continuation_logprobs: every prompt and continuation needs at least one token")
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(device)
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(chunk):
            prompt_len, cont_len = len(pairs[i][0]), len(pairs[i][1])
            by_index[i] = float(token_logp[row, prompt_len - 1 : prompt_len - 1 + cont_len].sum())
    scores = [by_index[i] for i in range(len(pairs))]
    return scores


def rank_answers(
    model,
    prompts: Sequence[list[int]],
    candidates: Sequence[Sequence[list[int]]],
    pad_token_id: int,
    batch_size: int = 32,
) -> list[int]:
    """Index of the best-scoring candidate continuation for each prompt."""
    pairs = [(p, c) for p, cands in zip(prompts, candidates) for c in cands]
    flat = continuation_logprobs(model, pairs, pad_token_id, batch_size)
    best, k = [], 0
    for cands in candidates:
        scores = flat[k : k + len(cands)]
        best.append(max(range(len(cands)), key=scores.__getitem__))
        k += len(cands)
    return best


@torch.no_grad()
def greedy_continuations(
    model,
    prompts: Sequence[list[int]],
    pad_token_id: int,
    max_new_tokens: int = 8,
    batch_size: int = 32,
    suppress_tokens: Sequence[int] | None = None,
    logits_processor=None,
    eos_token_id: int | None = None,
    processor_for_width=None,
    generate_kwargs: dict | None = None,
) -> list[list[int]]:
    """Greedy new tokens after each prompt (left-padded batches through `generate`); `suppress_tokens` are never
    generated (e.g. every speech token, for a text-only answer); `logits_processor` (a `LogitsProcessorList`)
    and `eos_token_id` are passed to `generate` (a batch stops once every row has produced the eos);
    `processor_for_width(width)` builds a batch's `LogitsProcessorList` from its padded prompt width (a processor
    that must know where the continuation starts); `generate_kwargs` override the decoding (e.g. `do_sample=True`
    with a temperature, for a processor that keeps the text greedy and samples the speech)."""
    device = _model_device_dtype(model)
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        kwargs = {
            "max_new_tokens": max_new_tokens, "pad_token_id": pad_token_id, "do_sample": False,
            "suppress_tokens": list(suppress_tokens) if suppress_tokens else None,
            "logits_processor": processor_for_width(width) if processor_for_width else logits_processor,
            **({"eos_token_id": eos_token_id} if eos_token_id is not None else {}),
            **(generate_kwargs or {}),
        }  # fmt: skip
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row, i in enumerate(chunk):
            out[i] = gen[row, width:].tolist()
    return out


def first_answer(text: str) -> str:
    """The generated answer: up to the first period or line end."""
    return text.split("\n", 1)[0].split(".", 1)[0].strip()


def answers_match(generated: str, answer: str) -> bool:
    return normalize_text(first_answer(generated)) == normalize_text(answer)


def text_qa_accuracy(model, tokenizer, rows: Sequence[dict], answer_sets: dict[int, list[str]], batch_size: int = 32):
    """T->T accuracy per task (ranked and generated) with chance, on rows with `task`, `story`, `question`,
    `answer`. `answer_sets[task]` lists the candidates (the task's answers seen in training)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [tokenizer(qa_prompt(r["story"], r["question"]), add_special_tokens=False)["input_ids"] for r in rows]
    for r in rows:
        if r["task"] not in answer_sets or not answer_sets[r["task"]]:
            raise ValueError(f"no answer set for bAbI task {r['task']}")
    cand_ids = {
        t: [tokenizer(answer_text(a), add_special_tokens=False)["input_ids"] for a in answers]
        for t, answers in answer_sets.items()
    }
    ranked = rank_answers(model, prompts, [cand_ids[r["task"]] for r in rows], pad, batch_size)
    generated = greedy_continuations(model, prompts, pad, batch_size=batch_size)
    per_task: dict[int, dict[str, float]] = {}
    for task in sorted({r["task"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["task"] == task]
        answers = answer_sets[task]
        ranked_ok = [normalize_text(answers[ranked[i]]) == normalize_text(rows[i]["answer"]) for i in idx]
        gen_ok = [
            answers_match(tokenizer.decode(generated[i], skip_special_tokens=True), rows[i]["answer"]) for i in idx
        ]
        per_task[task] = {
            "ranked": sum(ranked_ok) / len(idx),
            "generated": sum(gen_ok) / len(idx),
            "chance": 1.0 / len(answers),
            "n": len(idx),
        }
    return per_task


__all__ = [
    "answer_text",
    "answers_match",
    "continuation_logprobs",
    "first_answer",
    "greedy_continuations",
    "qa_prompt",
    "rank_answers",
    "text_qa_accuracy",
]

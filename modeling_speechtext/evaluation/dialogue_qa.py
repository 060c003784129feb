"""Spoken bAbI QA through the chat format: what the dialogue-SFT model answers, in text and in speech (issue 22).

Each spoken QA item (`spoken_qa` stage: test stories, seen and held-out voices) becomes one user turn (story and
question as one speech block, or as text for T->), the assistant turn is generated greedily under
`StreamingThoughtsLogitsProcessor` (the layout cannot break), and then:

* **->T**: the answer word is found in the generated text ("Mary is in the kitchen." answers "kitchen"; yes/no
  questions by the first word);
* **->S**: the same test on the generated speech read back by the speech tokenizer's ASR head;
* **speech vs text**: WER of that reading against the model's own text answer (the paper's ASR-WER of the speech
  answer, 5.74 at 9B): do the two streams say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modeling_speechtext.evaluation.wer import error_rates
from modeling_speechtext.text_normalization import normalize_text


def answer_in(sentence: str, answer: str) -> bool:
    """Does a full-sentence answer give bAbI's one-word answer? yes/no by its first word, else as a word in it."""
    words, target = normalize_text(sentence).split(), normalize_text(answer)
    if target in ("yes", "no", "maybe"):
        return bool(words) and words[0] == target
    return target in words


def chat_prompts(items: Sequence[dict], tokenizer, spoken: bool, system: str | None = None) -> list[list[int]]:
    """One user turn per item (story + question, speech block or text) and the assistant header, as ids."""
    from modeling_speechtext.data.dialogue import speech_block

    prompts = []
    for it in items:
        if spoken:
            content = speech_block(
                [s for sentence in it["story_speech"] for s in sentence] + list(it["question_speech"])
            )
        else:
            content = "\n".join([*it["story"].split("\n"), it["question"]])
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        prompts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"])  # fmt: skip
    return prompts


def generate_turns(model, prompts: list[list[int]], layout, pad_token_id: int, max_new_tokens: int,
                   batch_size: int = 16, mode: str = "interleaved", suppress_ids: Sequence[int] = (),
                   speech_sampling: dict | None = None):  # fmt: skip
    """Assistant turns under the layout processor: [(text ids, speech ids)] in prompt order. Greedy; with
    `speech_sampling` (`{"temperature": .., "top_p": .., "seed": ..}`) the speech is sampled and the text stays
    greedy (greedy speech loops and never ends: `logits_process_speech_text.py`)."""
    import torch
    from transformers import LogitsProcessorList

    from modeling_speechtext.evaluation.babi_qa import greedy_continuations
    from modeling_speechtext.models.speech_text.logits_process_speech_text import StreamingThoughtsLogitsProcessor

    sampling = dict(speech_sampling or {})
    seed = int(sampling.pop("seed", 0))
    if sampling:  # no top-k unless asked (transformers 5 adds top-k 50 to sampling by default)
        sampling = {"do_sample": True, "top_k": 0, **sampling}

    def processor(width: int):
        return LogitsProcessorList([StreamingThoughtsLogitsProcessor(layout, width, mode, suppress_ids,
                                                                     greedy_text=bool(sampling))])  # fmt: skip

    with torch.random.fork_rng(devices=[]):  # seeded here, the caller's RNG untouched
        torch.manual_seed(seed)
        gen = greedy_continuations(model, prompts, pad_token_id, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                   eos_token_id=layout.eos_token_id, processor_for_width=processor,
                                   generate_kwargs=sampling)  # fmt: skip
    return [layout.parse(g) for g in gen]


def speech_text_wer(texts: Sequence[str], heard: Sequence[str]) -> float | None:
    """WER of what the speech says (ASR readings) against the text it should say; rows with empty text skipped."""
    pairs = [(t, h) for t, h in zip(texts, heard) if normalize_text(t)]
    return error_rates([t for t, _ in pairs], [h for _, h in pairs])["wer"] if pairs else None


def data_speech_text_wer(dialogues, transcribe: Callable[[list[list[int]]], list[str]]) -> float | None:
    """The same judge on the dialogue data's own assistant turns (text-to-token speech vs its sentence): the floor
    a model that imitates its training targets perfectly would reach."""
    turns = [t for d in dialogues for t in d["turns"] if t["assistant_speech"]]
    wer = speech_text_wer(
        [t["assistant_text"] for t in turns], transcribe([list(t["assistant_speech"]) for t in turns])
    )
    return None if wer is None else round(wer, 4)


def dialogue_qa(model, tokenizer, layout, items: Sequence[dict], transcribe: Callable[[list[list[int]]], list[str]],
                spoken: bool = True, max_new_tokens: int = 120, batch_size: int = 16,
                suppress_ids: Sequence[int] = (), system: str | None = None,
                speech_sampling: dict | None = None) -> dict:  # fmt: skip
    """Accuracy of the text answer (->T) and of the speech answer read back (->S) per task, the speech-vs-text
    WER, and a few examples. `transcribe`: speech ids -> text (the speech tokenizer's ASR head)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    turns = generate_turns(model, chat_prompts(items, tokenizer, spoken, system), layout, pad, max_new_tokens, batch_size,
                           suppress_ids=suppress_ids, speech_sampling=speech_sampling)  # fmt: skip
    texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t, _ in turns]
    spoken_ids = [s for _, s in turns]
    heard = [""] * len(turns)
    have = [i for i, s in enumerate(spoken_ids) if s]
    for i, h in zip(have, transcribe([spoken_ids[i] for i in have]) if have else []):
        heard[i] = h
    src = "S" if spoken else "T"
    per_task = {}
    for task in sorted({it["task"] for it in items}):
        idx = [i for i, it in enumerate(items) if it["task"] == task]
        per_task[task] = {
            f"{src}->T": sum(answer_in(texts[i], items[i]["answer"]) for i in idx) / len(idx),
            f"{src}->S": sum(answer_in(heard[i], items[i]["answer"]) for i in idx) / len(idx),
            "n": len(idx),
        }
    agreement = speech_text_wer(texts, heard)
    return {
        "per_task": per_task,
        "speech_vs_text_wer": None if agreement is None else round(agreement, 4),
        "empty_speech": sum(not s for s in spoken_ids),
        "speech_tokens_mean": round(sum(len(s) for s in spoken_ids) / max(1, len(spoken_ids)), 1),
        "speech_sampling": speech_sampling,
        "examples": [
            {
                "answer": items[i]["answer"],
                "text": texts[i],
                "speech_heard": heard[i],
                "speech_tokens": len(spoken_ids[i]),
            }
            for i in range(min(5, len(items)))
        ],  # fmt: skip
    }


__all__ = ["answer_in", "chat_prompts", "data_speech_text_wer", "dialogue_qa", "generate_turns", "speech_text_wer"]

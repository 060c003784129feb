"""The speech-text LM's own ASR and TTS: the pretraining tasks, asked back in the layout the LM learnt them.

Pretraining renders an ASR pair as `Transcribe the speech:` + the wrapped speech + ` <transcript>` (+ eos) and a
TTS pair as `Say it aloud:` + ` <text>` + the wrapped speech (+ eos) (`data.mixture`). Here the prompt is that
rendering minus the target, built from the same segments and tokenized by the same `render_segments` (each
segment on its own, exactly as in training), so the LM sees nothing it did not see in pretraining:

* ASR: greedy text after the wrapped speech, with every speech token and both audio markers suppressed (the
  answer is text), cut at eos or the first line end;
* TTS: `<|begin_of_audio|>` is forced (the last prompt token) and greedy decoding may pick only speech tokens or
  `<|end_of_audio|>`. This uses a `LogitsProcessor` that keeps an *allowed* set, not `suppress_tokens`: the
  allowed set is K + 1 ids while the suppressed one would be the whole text vocabulary (and any padded
  embedding rows) checked at every step; and `generate` is told `<|end_of_audio|>` is the end, so a batch stops
  when every row has closed its audio instead of always running `max_new_tokens`. A row that never closes it
  is a *runaway* (counted by `lm_asr_tts_wer`), its speech kept as generated.

`lm_asr_tts_wer` scores both with the project's one WER (`evaluation.wer`): ASR against the reference text,
TTS after reading the generated speech back with `transcribe` (the speech tokenizer's ASR head, given by the
caller). An utterance whose TTS produced no speech is not sent to `transcribe`: it is an empty hypothesis,
which the WER policy counts as all deletions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from modeling_speechtext.data.mixture import DEFAULT_INSTRUCTIONS, render_segments
from modeling_speechtext.evaluation.babi_qa import greedy_continuations
from modeling_speechtext.evaluation.wer import word_error_rate


class AllowedTokensLogitsProcessor(LogitsProcessor):
    """Sets every logit outside `allowed` to -inf (the complement of `SuppressTokensLogitsProcessor`).

    Args:
        allowed: the token ids that may be generated. The mask is sized from the logits at the first call (and
            kept), so model heads wider than the tokenizer (padded embedding rows) are covered too.
    """

    def __init__(self, allowed: Sequence[int]):
        self.allowed = torch.tensor(sorted({int(t) for t in allowed}), dtype=torch.long)
        self._mask: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._mask is None or self._mask.shape[0] != scores.shape[-1] or self._mask.device != scores.device:
            mask = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            mask[self.allowed.to(scores.device)] = False
            self._mask = mask
        return scores.masked_fill(self._mask, -float("inf"))


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _instruction_segments(kind: str, instruction: str | None) -> list[dict]:
    text = DEFAULT_INSTRUCTIONS[kind] if instruction is None else instruction
    return [{"modality": "text", "text": text, "speech_ids": [], "loss": False}] if text else []


def asr_prompt(tokenizer, vocab, speech_ids: Sequence[int], instruction: str | None = None) -> list[int]:
    """Token ids of the pretraining ASR rendering up to (not including) the transcript."""
    if len(speech_ids) == 0:
        raise ValueError("lm_asr: an utterance with no speech ids")
    segments = [*_instruction_segments("asr", instruction),
                {"modality": "speech", "text": "", "speech_ids": [int(s) for s in speech_ids], "loss": False}]  # fmt: skip
    return render_segments(segments, tokenizer, vocab, eos=False)["input_ids"]


def tts_prompt(tokenizer, vocab, text: str, instruction: str | None = None) -> list[int]:
    """Token ids of the pretraining TTS rendering up to and including `<|begin_of_audio|>`."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"lm_tts: empty text to speak ({text!r})")
    segments = [*_instruction_segments("tts", instruction),
                {"modality": "text", "text": " " + text.strip(), "speech_ids": [], "loss": False}]  # fmt: skip
    return render_segments(segments, tokenizer, vocab, eos=False)["input_ids"] + [vocab.begin_of_audio_id]


def lm_asr(
    model,
    tokenizer,
    vocab,
    speech_ids_list: Sequence[Sequence[int]],
    max_new_tokens: int = 48,
    batch_size: int = 32,
    instruction: str | None = None,
) -> list[str]:
    """Transcripts of speech-id sequences by the LM itself (greedy, text only), one per input.

    `instruction` overrides `DEFAULT_INSTRUCTIONS["asr"]` for a mixture whose ASR part set its own.
    """
    prompts = [asr_prompt(tokenizer, vocab, s, instruction) for s in speech_ids_list]
    if not prompts:
        return []
    speech_only = [*vocab.speech_token_range, vocab.begin_of_audio_id, vocab.end_of_audio_id]
    generated = greedy_continuations(model, prompts, _pad_id(tokenizer), max_new_tokens, batch_size, speech_only)
    texts = []
    for ids in generated:
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True).split("\n", 1)[0].strip())
    return texts


@torch.no_grad()
def _tts(
    model, tokenizer, vocab, texts, max_new_tokens, batch_size, instruction
) -> tuple[list[list[int]], list[bool]]:
    """Speech ids per text and whether each closed its audio (`<|end_of_audio|>`) within `max_new_tokens`."""
    prompts = [tts_prompt(tokenizer, vocab, t, instruction) for t in texts]
    return speak(model, prompts, vocab, _pad_id(tokenizer), max_new_tokens, batch_size)


def speak(
    model, prompts: Sequence[list[int]], vocab, pad: int, max_new_tokens: int, batch_size: int
) -> tuple[list[list[int]], list[bool]]:
    """Greedy speech after prompts that end inside an open audio block: only speech tokens and
    `<|end_of_audio|>` may be generated; returns the speech ids and whether each row closed its block."""
    allowed = AllowedTokensLogitsProcessor([*vocab.speech_token_range, vocab.end_of_audio_id])
    generated = greedy_continuations(model, prompts, pad, max_new_tokens, batch_size,
                                     logits_processor=LogitsProcessorList([allowed]),
                                     eos_token_id=vocab.end_of_audio_id)  # fmt: skip
    speech: list[list[int]] = []
    ended: list[bool] = []
    for new in generated:
        ended.append(vocab.end_of_audio_id in new)
        if ended[-1]:
            new = new[: new.index(vocab.end_of_audio_id)]
        speech.append(vocab.token_to_speech_ids(new))  # drops only the padding after an early end
    return speech, ended


def lm_tts(
    model,
    tokenizer,
    vocab,
    texts: Sequence[str],
    max_new_tokens: int = 200,
    batch_size: int = 16,
    instruction: str | None = None,
) -> list[list[int]]:
    """Speech ids (0..K-1) the LM speaks for each text, greedy, cut at `<|end_of_audio|>`.

    `instruction` overrides `DEFAULT_INSTRUCTIONS["tts"]` for a mixture whose TTS part set its own.
    """
    return _tts(model, tokenizer, vocab, texts, max_new_tokens, batch_size, instruction)[0]


def lm_asr_tts_wer(
    model,
    tokenizer,
    vocab,
    rows: Sequence[dict],
    transcribe: Callable[[list[list[int]]], list[str]],
    asr_max_new_tokens: int = 48,
    tts_max_new_tokens: int = 200,
    batch_size: int = 16,
    asr_instruction: str | None = None,
    tts_instruction: str | None = None,
) -> dict[str, float]:
    """ASR and TTS WER of the LM on `rows` (each with `speech_ids` and `text`).

    Returns:
        `{"asr_wer", "tts_wer", "n", "tts_runaway"}`; `tts_runaway` is the fraction of TTS outputs that hit
        `tts_max_new_tokens` without `<|end_of_audio|>`.
    """
    if not rows:
        raise ValueError("lm_asr_tts_wer: no rows to score")
    for k, row in enumerate(rows):
        if "speech_ids" not in row or "text" not in row:
            raise ValueError(f"lm_asr_tts_wer: row {k} needs `speech_ids` and `text`, has {sorted(row)}")
    references = [row["text"] for row in rows]
    heard_asr = lm_asr(model, tokenizer, vocab, [row["speech_ids"] for row in rows], asr_max_new_tokens,
                       batch_size, asr_instruction)  # fmt: skip
    speech, ended = _tts(model, tokenizer, vocab, references, tts_max_new_tokens, batch_size, tts_instruction)
    spoken = [i for i, s in enumerate(speech) if s]
    heard_tts = [""] * len(rows)  # no speech: an empty hypothesis (all deletions, the WER policy)
    if spoken:
        transcripts = transcribe([speech[i] for i in spoken])
        if len(transcripts) != len(spoken):
            raise ValueError(f"transcribe returned {len(transcripts)} transcripts for {len(spoken)} utterances")
        for i, t in zip(spoken, transcripts):
            heard_tts[i] = t
    return {
        "asr_wer": word_error_rate(references, heard_asr),
        "tts_wer": word_error_rate(references, heard_tts),
        "n": len(rows),
        "tts_runaway": sum(not e for e in ended) / len(rows),
    }


__all__ = ["AllowedTokensLogitsProcessor",
    "speak", "asr_prompt", "lm_asr", "lm_asr_tts_wer", "lm_tts", "tts_prompt"]

"""Speech-only generation for a text-to-token model, shipped in its folder as `custom_generate/generate.py`.

A text-to-token model is a stock causal LM over text + speech tokens. Left to plain `generate()`, an undertrained
(or just unlucky) one can write text tokens after `text<|begin_of_audio|>`, and its span is then no speech at
all. The rule that prevents it (only `<|audio_i|>` tokens, and `<|end_of_audio|>` once at least one of them was
written) must travel with the weights, so this file imports only torch and transformers: transformers loads it
from the model folder or Hub repo when the model is loaded with `trust_remote_code=True` (Hub custom generation)
and `model.generate(...)` runs it. Where the speech tokens sit is read from the saved `generation_config.json`
(`speech_token_offset`, `speech_codebook_size`, `eos_token_id` = `<|end_of_audio|>`).

Example:
```python
>>> model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)  # loads this file
>>> tokenizer = AutoTokenizer.from_pretrained(path)
>>> inputs = tokenizer(["mary went to the kitchen<|begin_of_audio|>"], return_tensors="pt", add_special_tokens=False)
>>> out = model.generate(**inputs, tokenizer=tokenizer)  # speech tokens, then <|end_of_audio|>
```
Passing `tokenizer=` also applies the per-text token budget (`max_tokens_per_char`, `min_token_budget`) that
the synthesizer applies; without it the generation config's `max_length` is the only bound. The speechtext
synthesizer (`TextToTokenSynthesizer`) uses the same processor and budget, and adds per-text seeded sampling,
continuous batching, runaway retries and MBR decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList


def token_budget(text: str, max_tokens_per_char: float, min_token_budget: int) -> int:
    """The most speech tokens a text may get: `max(min_token_budget, ceil(max_tokens_per_char * len(text)))`."""
    return max(min_token_budget, math.ceil(max_tokens_per_char * len(text)))


class SpeechOnlyLogitsProcessor(LogitsProcessor):
    """Masks every token but `<|audio_0|>`..`<|audio_{K-1}|>`; `<|end_of_audio|>` is allowed from the second step.

    Args:
        speech_token_offset (`int`): token id of `<|audio_0|>` (speech tokens have contiguous ids).
        codebook_size (`int`): number of speech tokens K.
        end_of_audio_id (`int`): token id of `<|end_of_audio|>`.
        prompt_length (`int`, *optional*): width of the (left-padded) prompt; needed by `__call__` to know whether
            a speech token was written yet.
    """

    def __init__(self, speech_token_offset: int, codebook_size: int, end_of_audio_id: int, prompt_length: int = 0):
        if codebook_size < 1 or speech_token_offset < 0:
            raise ValueError(f"bad speech token range: offset {speech_token_offset}, codebook_size {codebook_size}")
        self.speech_token_offset, self.codebook_size = int(speech_token_offset), int(codebook_size)
        self.end_of_audio_id, self.prompt_length = int(end_of_audio_id), int(prompt_length)
        self._allowed: dict[tuple[int, torch.device], torch.Tensor] = {}

    @classmethod
    def from_generation_config(cls, generation_config, prompt_length: int = 0) -> SpeechOnlyLogitsProcessor:
        """From the keys a text-to-token model saves in `generation_config.json`; a clear error if they are absent."""
        offset = getattr(generation_config, "speech_token_offset", None)
        size = getattr(generation_config, "speech_codebook_size", None)
        eos = generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) and len(eos) == 1 else eos
        if offset is None or size is None or not isinstance(eos, int):
            raise ValueError(
                "this generation config does not describe a text-to-token model: it needs speech_token_offset, "
                f"speech_codebook_size and eos_token_id = <|end_of_audio|> (got {offset}, {size}, {eos})"
            )
        return cls(offset, size, eos, prompt_length)

    def mask(self, scores: torch.Tensor, may_end) -> torch.Tensor:
        """Float scores with every non-speech token at -inf; `may_end` (a bool, or one per row) allows the end."""
        key = (scores.shape[1], scores.device)
        if key not in self._allowed:
            allowed = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
            allowed[self.speech_token_offset : self.speech_token_offset + self.codebook_size] = True
            self._allowed[key] = allowed
        mask = self._allowed[key].expand_as(scores).clone()
        mask[:, self.end_of_audio_id] = may_end
        return scores.float().masked_fill(~mask, float("-inf"))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return self.mask(scores, input_ids.shape[1] - self.prompt_length > 0)


class SpeechTokenBudget(StoppingCriteria):
    """Stops row r after `limits[r]` new tokens (its speech budget plus one for `<|end_of_audio|>`).

    Only a row's own budget stops it, so a text's tokens never depend on its batch-mates. Beam search passes
    several candidate rows per text, consecutive in the batch, so the per-text limit is repeated to fit.
    """

    def __init__(self, limits: Sequence[int], prompt_length: int):
        self.limits = torch.as_tensor(list(limits))
        self.prompt_length = int(prompt_length)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        per_text = input_ids.shape[0] // self.limits.shape[0]
        new = input_ids.shape[1] - self.prompt_length
        return new >= self.limits.repeat_interleave(per_text).to(input_ids.device)


def generate(model, inputs=None, generation_config=None, logits_processor=None, stopping_criteria=None, **kwargs):
    """`generate()` with `SpeechOnlyLogitsProcessor` first in the processors (before temperature / top-k / top-p,
    as in the synthesizer) and, when `tokenizer=` is given, each prompt's `SpeechTokenBudget`."""
    input_ids = inputs if inputs is not None else kwargs.pop("input_ids", None)
    if input_ids is None:
        raise ValueError("text-to-token generation needs input_ids: the tokenized `text<|begin_of_audio|>` prompts")
    config = generation_config if generation_config is not None else model.generation_config
    width = input_ids.shape[1]
    processors = LogitsProcessorList([SpeechOnlyLogitsProcessor.from_generation_config(config, width)])
    processors.extend(logits_processor or [])
    criteria = StoppingCriteriaList(stopping_criteria or [])
    tokenizer = kwargs.get("tokenizer")
    ratio, floor = getattr(config, "max_tokens_per_char", None), getattr(config, "min_token_budget", None)
    if tokenizer is not None and ratio and floor:
        texts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)  # padding, voice and markers dropped
        limits = [token_budget(text.strip(), ratio, floor) + 1 for text in texts]
        criteria.append(SpeechTokenBudget(limits, width))
        if kwargs.get("max_new_tokens") is None and kwargs.get("max_length") is None:
            kwargs["max_length"] = width + max(limits)  # (max_new_tokens would clash with the config's max_length)
    return GenerationMixin.generate(
        model, input_ids, generation_config=generation_config, logits_processor=processors,
        stopping_criteria=criteria, **kwargs,
    )  # fmt: skip


__all__ = ["SpeechOnlyLogitsProcessor", "SpeechTokenBudget", "generate", "token_budget"]

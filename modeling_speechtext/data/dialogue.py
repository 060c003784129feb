"""Spoken dialogues as TRL conversational data: messages, the chat template, and the streaming-thoughts layout.

The dialogue builder (`dataset_builders/dialogue/`) writes a tokenizer-neutral form, one row per dialogue::

    {"id": ..., "task": 1, "voice": "flite:rms", "user_modality": "speech",
     "turns": [{"user_text": "Mary went to the kitchen.\\nWhere is Mary?", "user_speech": [..ids..],
                "assistant_text": "Mary is in the kitchen.", "assistant_speech": [..ids..], "answer": "kitchen"}]}

`dialogue_messages` turns a row into `messages` for one LM's tokenizer: a spoken user turn is one
`<|begin_of_audio|> <|audio_i|>... <|end_of_audio|>` block, a text one its words; the assistant turn is laid out in
streaming thoughts (`StreamingThoughtsLayout`: 13 text tokens, 26 speech tokens, alternating) and stored as typed
parts (`{"type": "text" | "speech", "text": ...}`), so that the chat template can put the loss on the text parts
only, the speech parts only, or both (`loss_on`, a per-example `chat_template_kwargs` that TRL's `SFTTrainer`
passes to `apply_chat_template`): the paper's two copies of every sample. The template wraps the trained parts in
`{% generation %}` for TRL's `assistant_only_loss`; the turn's eos is always trained (the model must learn to stop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from modeling_speechtext.constants import AUDIO_TOKEN_TEMPLATE

logger = logging.getLogger(__name__)

SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
ROLE_TOKENS = (SYSTEM, USER, ASSISTANT)
LOSS_ON = ("all", "text", "speech")

# One line on purpose: whitespace outside the tags would become tokens. Roles are special tokens added by the SFT
# recipe; content is a string or a list of typed parts.
CHAT_TEMPLATE = (
    "{%- set loss_on = loss_on | default('all') -%}"
    "{%- for message in messages -%}"
    "{{- '<|' ~ message['role'] ~ '|>' -}}"
    "{%- if message['content'] is string -%}{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- for part in parts -%}"
    "{%- if loss_on == 'all' or part['type'] == loss_on -%}{% generation %}{{- part['text'] -}}{% endgeneration %}"
    "{%- else -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{% generation %}{{- eos_token -}}{% endgeneration %}"
    "{%- else -%}{%- for part in parts -%}{{- part['text'] -}}{%- endfor -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)


def speech_block(speech_ids: Sequence[int]) -> str:
    """Speech ids as the token strings of one spoken turn (markers included)."""
    if len(speech_ids) == 0:
        raise ValueError("a spoken turn with no speech tokens")
    return "<|begin_of_audio|>" + "".join(AUDIO_TOKEN_TEMPLATE.format(int(s)) for s in speech_ids) + "<|end_of_audio|>"


def assistant_parts(text: str, speech_ids: Sequence[int], tokenizer, layout) -> list[dict[str, str]]:
    """The assistant turn in streaming thoughts as typed parts (chunk boundaries in the LM's own tokens)."""
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    speech = [layout.audio_offset + int(s) for s in speech_ids]
    return [
        {"type": kind, "text": tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)}
        for kind, ids in layout.chunks(text_ids, speech)
    ]


def user_parts(turn: dict[str, Any], modality: str) -> list[dict[str, str]]:
    if modality == "speech":
        return [{"type": "speech", "text": speech_block(turn["user_speech"])}]
    if modality != "text":
        raise ValueError(f"user_modality must be speech or text, got {modality!r}")
    if not turn["user_text"].strip():
        raise ValueError("a text user turn with no text")
    return [{"type": "text", "text": turn["user_text"]}]


def dialogue_messages(row: dict[str, Any], tokenizer, layout, system: str | None = None) -> list[dict[str, Any]]:
    """One neutral dialogue row -> chat `messages` (see the module docstring)."""
    if not row.get("turns"):
        raise ValueError(f"dialogue {row.get('id')!r} has no turns")
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    for turn in row["turns"]:
        messages.append({"role": "user", "content": user_parts(turn, row.get("user_modality", "speech"))})
        messages.append({"role": "assistant",
                         "content": assistant_parts(turn["assistant_text"], turn["assistant_speech"], tokenizer, layout)})  # fmt: skip
    return messages


def to_conversational(dataset, tokenizer, layout, copies: dict[str, int], system: str | None = None):
    """Neutral rows -> TRL conversational rows (`messages`, `chat_template_kwargs: {loss_on}`), one copy per
    `loss_on` value repeated `copies[loss_on]` times (the paper: a text-loss copy and a speech-loss copy)."""
    from datasets import concatenate_datasets

    bad = set(copies) - set(LOSS_ON)
    if bad or not any(copies.values()) or any(int(n) < 0 for n in copies.values()):
        raise ValueError(f"copies must give at least one of {LOSS_ON} a positive count, got {copies}")
    keep = [c for c in dataset.column_names if c in ("id", "task")]

    reasons: dict[str, int] = {}

    def fits(row) -> bool:
        """Every turn renders: user content present, and the assistant turn laid out in the LM's own tokens
        (its speech outlasts its full text chunks, and the decoded chunks re-tokenize to the same ids: what the
        logits processor enforces at inference). A T2T output cut short breaks the first; such a dialogue is
        dropped and counted by reason, not a crash mid-epoch."""
        try:
            for turn in row["turns"]:
                user_parts(turn, row.get("user_modality", "speech"))
                parts = assistant_parts(turn["assistant_text"], turn["assistant_speech"], tokenizer, layout)
                text_ids = tokenizer(turn["assistant_text"], add_special_tokens=False)["input_ids"]
                speech = [layout.audio_offset + int(s) for s in turn["assistant_speech"]]
                rendered = tokenizer("".join(p["text"] for p in parts), add_special_tokens=False)["input_ids"]
                if rendered != layout.build(text_ids, speech, eos=False):
                    raise ValueError("the text chunks re-tokenize to other ids")
            return True
        except ValueError as e:
            reasons[str(e)[:80]] = reasons.get(str(e)[:80], 0) + 1
            return False

    before = len(dataset)
    dataset = dataset.filter(fits, desc="dialogues that fit the layout", num_proc=None)
    if len(dataset) < before:
        logger.warning("dialogue: %d of %d dialogues dropped: %s", before - len(dataset), before, reasons)
    if not len(dataset):
        raise ValueError("no dialogue fits the streaming-thoughts layout")

    def convert(row, loss_on):
        return {
            "messages": dialogue_messages(row, tokenizer, layout, system),
            "chat_template_kwargs": {"loss_on": loss_on},
        }

    parts = []
    for loss_on, n in copies.items():
        if n:
            one = dataset.map(convert, fn_kwargs={"loss_on": loss_on}, remove_columns=[c for c in dataset.column_names
                              if c not in keep], desc=f"dialogues -> messages ({loss_on} loss)")  # fmt: skip
            parts += [one] * int(n)
    return concatenate_datasets(parts)


def layout_from_tokenizer(tokenizer, text_chunk: int = 13, speech_chunk: int = 26):
    """The `StreamingThoughtsLayout` of a tokenizer extended with the speech vocabulary."""
    from modeling_speechtext.models.speech_text.layout_speech_text import StreamingThoughtsLayout
    from modeling_speechtext.vocab import SpeechVocab

    vocab = SpeechVocab.from_tokenizer(tokenizer)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token to end a turn")
    return StreamingThoughtsLayout(vocab.audio_offset, vocab.codebook_size, vocab.begin_of_audio_id,
                                   vocab.end_of_audio_id, tokenizer.eos_token_id, text_chunk, speech_chunk)  # fmt: skip


__all__ = [
    "ASSISTANT",
    "CHAT_TEMPLATE",
    "LOSS_ON",
    "ROLE_TOKENS",
    "SYSTEM",
    "USER",
    "assistant_parts",
    "dialogue_messages",
    "layout_from_tokenizer",
    "speech_block",
    "to_conversational",
    "user_parts",
]

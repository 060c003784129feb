"""Building, loading and prompting a text-to-token model: one way speech (and voice) tokens enter an LM.

A fresh LM and a pretrained Hub LM take the same path (`add_speech_tokens`, generation ending at
`<|end_of_audio|>`), and training and inference share one prompt format (`format_prompt`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from modeling_speechtext.constants import BEGIN_OF_AUDIO
from modeling_speechtext.vocab import SpeechVocab, add_speech_tokens

VOICE_TOKEN_TEMPLATE = "<|voice:{}|>"


def voice_token(voice: str) -> str:
    """The special token that asks a voice-conditioned text-to-token model for one corpus voice's tokens."""
    return VOICE_TOKEN_TEMPLATE.format(voice)


def tokenizer_voices(tokenizer) -> list[str]:
    """Voices a text-to-token tokenizer was extended with (`add_voice_tokens`), in id order; [] if none."""
    head, tail = VOICE_TOKEN_TEMPLATE.split("{}")
    vocab = tokenizer.get_vocab()
    found = [(i, t[len(head) : -len(tail)]) for t, i in vocab.items() if t.startswith(head) and t.endswith(tail)]
    return [v for _, v in sorted(found)]


def add_voice_tokens(tokenizer, voices: Sequence[str]) -> list[str]:
    """Extend the tokenizer with one special token per voice; call before the model is built or resized.

    Why voices at all: the corpus has many voices, and their tokens for one sentence differ. A model that does
    not know which voice it is imitating learns their mixture, and greedy decoding of a mixture makes token
    sequences no voice would produce (more ASR errors). With the voice in the prompt each target is one mode.
    """
    voices = sorted(set(voices))
    bad = [v for v in voices if not v or "|>" in v or v != v.strip()]
    if bad:
        raise ValueError(f"voice names must be non-empty, without '|>' or surrounding spaces: {bad}")
    tokenizer.add_tokens([voice_token(v) for v in voices], special_tokens=True)
    return voices


def format_prompt(text: str, voice: str | None = None) -> str:
    """The one prompt format, shared by training and inference: `[<|voice:v|>]text<|begin_of_audio|>`."""
    return (voice_token(voice) if voice else "") + text.strip() + BEGIN_OF_AUDIO


def build_text_to_token_model(tokenizer, codebook_size: int, model_config: dict[str, Any] | None = None):
    """A fresh causal LM for text -> speech tokens: `AutoConfig.for_model(model_type, ...)` + speech vocabulary.

    The LM is built over the text vocabulary and then extended by `add_speech_tokens`, the same path a pretrained
    Hub LM takes, so there is one way speech tokens enter a model. Returns `(model, vocab)`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = {
        "model_type": "llama",
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 768,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
    }
    cfg.update(model_config or {})
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **cfg,
    )
    model = AutoModelForCausalLM.from_config(config)
    return model, _prepare_text_to_token(model, tokenizer, codebook_size)


def load_text_to_token_model(name_or_path: str | os.PathLike, codebook_size: int, tokenizer=None, **from_pretrained):
    """A pretrained causal LM (Hub id or folder) made into a text-to-token model.

    Two uses: at scale the text-to-token model can start from a pretrained text LM (its text side already reads
    text; new speech rows are mean-initialised), and a trained text-to-token model can be trained further
    (more steps, a new corpus) from its folder, where `add_speech_tokens` finds its speech tokens and adds
    nothing. `tokenizer` defaults to the checkpoint's own. Weights load from safetensors only. Returns
    `(model, tokenizer, vocab)`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True, **from_pretrained)
    except ValueError as err:  # e.g. "Unrecognized configuration class ... for AutoModelForCausalLM"
        raise ValueError(f"{name_or_path}: not a causal LM checkpoint, cannot start a text-to-token model") from err
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name_or_path}: its tokenizer has neither a pad nor an eos token for left padding")
        tokenizer.pad_token = tokenizer.eos_token  # Llama-family tokenizers ship without a pad token
    return model, tokenizer, _prepare_text_to_token(model, tokenizer, codebook_size)


def _prepare_text_to_token(model, tokenizer, codebook_size: int) -> SpeechVocab:
    """Speech vocabulary in, and generation ends at `<|end_of_audio|>`: one path for fresh and pretrained LMs."""
    vocab = add_speech_tokens(model, tokenizer, codebook_size)
    model.config.eos_token_id = vocab.end_of_audio_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = vocab.end_of_audio_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return vocab


__all__ = [
    "VOICE_TOKEN_TEMPLATE",
    "add_voice_tokens",
    "build_text_to_token_model",
    "format_prompt",
    "load_text_to_token_model",
    "tokenizer_voices",
    "voice_token",
]

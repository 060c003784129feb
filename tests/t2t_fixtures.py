"""Tiny text-to-token fixtures shared by the vocab / synthesizer / interleaved tests (no trained weights)."""

from __future__ import annotations

SENTENCES = [
    "Mary went to the kitchen.",
    "John moved to the garden.",
    "Where is Mary?",
    "Sandra journeyed to the bathroom.",
    "Daniel picked up the football there.",
    "The kitchen is north of the garden.",
]


def tiny_text_tokenizer(vocab_size: int = 300):
    """A byte-level BPE with `<|endoftext|>` as eos/pad, trained in well under a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(SENTENCES * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_t2t(codebook_size: int = 32, seed: int = 0, voices: list[str] | None = None, **synthesis):
    """A random tiny text-to-token synthesizer (hidden 32, 2 layers); with `voices`, voice-conditioned."""
    import torch

    from modeling_speechtext.generation.text_to_token import (
        SynthesisConfig,
        TextToTokenSynthesizer,
        add_voice_tokens,
        build_text_to_token_model,
    )

    torch.manual_seed(seed)
    tok = tiny_text_tokenizer()
    if voices:
        add_voice_tokens(tok, voices)
        synthesis.setdefault("voice", sorted(voices)[0])
    model, _ = build_text_to_token_model(
        tok,
        codebook_size,
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 512,
        },
    )
    settings = {"max_tokens_per_char": 0.5, "min_token_budget": 4, **synthesis}
    return TextToTokenSynthesizer(model, tok, SynthesisConfig(**settings))


def plain_text_lm(tokenizer):
    """A tiny random Llama over the text vocabulary only (no speech tokens): what the synthesizer must refuse."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=32)  # fmt: skip
    return LlamaForCausalLM(config)


__all__ = ["SENTENCES", "plain_text_lm", "tiny_text_tokenizer", "tiny_t2t"]

"""A tiny speech-text LM for the evaluation tests: the test BPE extended with K speech tokens, a 2-layer Llama over
it, and the few dozen plain optimizer steps that make it memorise a handful of sequences (so a test can show that a
model which knows the answers scores full marks and an untrained one does not)."""

import torch
from t2t_fixtures import tiny_text_tokenizer

from modeling_speechtext.vocab import add_speech_tokens


def speech_text_tokenizer(codebook_size: int):
    """(tokenizer, SpeechVocab): the test BPE with `codebook_size` speech tokens and the audio markers."""
    tok = tiny_text_tokenizer()
    return tok, add_speech_tokens(None, tok, codebook_size)


def tiny_llama(tok, seed: int = 0, extra_rows: int = 0):
    """A fresh 2-layer Llama (eval mode) over `tok`'s vocabulary, plus `extra_rows` unused embedding rows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok) + extra_rows, hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=96, max_position_embeddings=128,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def memorise(model, sequences: list[list[int]], epochs: int, lr: float):
    """Plain AdamW on each sequence in turn (next-token loss everywhere); returns the model in eval mode."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for seq in sequences:
            x = torch.tensor([seq])
            model(input_ids=x, labels=x).loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()

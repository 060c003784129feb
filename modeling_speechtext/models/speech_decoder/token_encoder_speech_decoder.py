"""The speech decoder's condition: token ids -> block-causal transformer states -> mel frame rate.

The encoder starts from a learned embedding of each id, from the speech tokenizer's own post-quantizer states
(`tokenizer_states_speech_decoder.py`, frozen), or from both (config `condition`).

The speech tokenizer's rate is fixed (12.5 Hz), so no duration model: the length regulator repeats each token
state `frames_per_token` times and tells each copy which of its frames it is.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_speech_decoder import SpeechDecoderConfig
from .layers_speech_decoder import SpeechDecoderLayer, block_attention_mask, rotary_cos_sin
from .tokenizer_states_speech_decoder import SpeechDecoderTokenizerStates


class SpeechDecoderTokenEncoder(nn.Module):
    """Speech token ids `[batch, tokens]` -> hidden states `[batch, tokens, hidden]` (block-causal)."""

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = (
            nn.Embedding(config.codebook_size, config.hidden_size) if config.condition != "tokenizer_states" else None
        )
        self.tokenizer_states = self.states_proj = None
        if config.condition != "tokens":
            block = config.block_size if config.tokenizer_states_block_causal else None
            self.tokenizer_states = SpeechDecoderTokenizerStates(config.tokenizer_config, block)
            self.states_proj = nn.Linear(self.tokenizer_states.config.d_model, config.hidden_size)
        self.layers = nn.ModuleList([SpeechDecoderLayer(config) for _ in range(config.encoder_layers)])
        self.norm = nn.LayerNorm(config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, tokenizer_states=None
    ) -> torch.Tensor:
        """`tokenizer_states`: the copy's output for these ids, when the caller computed it already (training
        precomputes it on whole utterances, then crops: the copy is frozen, and a crop would lose its context)."""
        c = self.config
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = rotary_cos_sin(positions, c.hidden_size // c.num_attention_heads, c.rope_theta)
        valid = attention_mask.bool() if attention_mask is not None else None
        mask = block_attention_mask(positions, positions, c.block_size, c.context_blocks, valid)
        x = 0
        if self.embed_tokens is not None:
            x = self.embed_tokens(input_ids.clamp(min=0))
        if self.tokenizer_states is not None:
            if tokenizer_states is None:
                with torch.no_grad():
                    tokenizer_states = self.tokenizer_states(input_ids, attention_mask)
            x = x + self.states_proj(tokenizer_states.to(self.states_proj.weight.dtype))
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class SpeechDecoderLengthRegulator(nn.Module):
    """Token rate -> mel frame rate: each token state is repeated `frames_per_token` times and told, by a
    learned embedding, which of its frames it is (the tokenizer's rate is fixed, so no duration model)."""

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__()
        self.frames_per_token = config.frames_per_token
        self.position_in_token = nn.Embedding(config.frames_per_token, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        b, n, h = hidden.shape
        up = hidden[:, :, None, :] + self.position_in_token.weight[None, None]
        return self.proj(up.reshape(b, n * self.frames_per_token, h))


__all__ = ["SpeechDecoderLengthRegulator", "SpeechDecoderTokenEncoder"]

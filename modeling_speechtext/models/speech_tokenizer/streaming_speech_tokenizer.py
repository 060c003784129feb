"""Streaming form of the speech tokenizer's `encode`: log-mel frames in, tokens out, block by block.

Kept apart from the model because it is a different way of *running* the same layers (a KV cache per layer, conv
context carried between blocks), not part of the network. Exactness rests on the model being causal (causal conv
stem, block-causal attention): a block's tokens depend only on it and earlier blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from .layers_speech_tokenizer import encoder_attention_mask, masked_average_pool


class SpeechTokenizerStreamingEncoder:
    """Encode a stream of log-mel frames block by block, with a KV cache: the streaming form of `encode`.

    With a causal conv stem and block-causal attention, a block's tokens depend only on that block and earlier
    ones, so `push`ing features in any chunk sizes and then `flush`ing gives exactly the offline tokens. The conv
    stem keeps its last two input and two intermediate frames as left context; each encoder layer caches the
    keys/values of finished blocks. One stream (batch 1) per instance.

    Example:
    ```python
    >>> stream = model.streaming_encoder()
    >>> for chunk in mel_chunks:          # [n_mels, frames] pieces of any size
    ...     new_ids = stream.push(chunk)  # tokens of the blocks completed so far
    >>> last_ids = stream.flush()         # the final, partial block
    ```
    """

    def __init__(self, model: nn.Module):
        """`model`: a `SpeechTokenizerModel` with `causal_conv=True` and `causal_block_size` set."""
        cfg = model.config
        if not cfg.causal_conv or cfg.causal_block_size is None:
            raise ValueError("streaming needs a model with causal_conv=True and causal_block_size set")
        self.model = model
        self.block_mel_frames = 2 * cfg.causal_block_size  # the stem halves the frame rate
        self.reset()

    def reset(self) -> None:
        cfg, device, dtype = self.model.config, self.model.device, self.model.dtype
        self.buffer = torch.zeros(1, cfg.num_mel_bins, 0, device=device, dtype=dtype)
        self.mel_context = torch.zeros(1, cfg.num_mel_bins, 2, device=device, dtype=dtype)
        self.conv_context = torch.zeros(1, cfg.d_model, 2, device=device, dtype=dtype)
        self.cache = DynamicCache()
        self.frames_done = 0

    @torch.no_grad()
    def push(self, features: torch.Tensor) -> list[int]:
        """Append `[n_mels, T]` (or `[1, n_mels, T]`) features; returns the tokens of newly completed blocks."""
        if features.dim() == 2:
            features = features[None]
        if features.dim() != 3 or features.shape[:2] != (1, self.model.config.num_mel_bins):
            raise ValueError(
                f"features must be [{self.model.config.num_mel_bins}, frames], got {tuple(features.shape)}"
            )
        self.buffer = torch.cat([self.buffer, features.to(self.buffer)], dim=-1)
        out: list[int] = []
        while self.buffer.shape[-1] >= self.block_mel_frames:
            out += self._block(self.buffer[..., : self.block_mel_frames])
            self.buffer = self.buffer[..., self.block_mel_frames :]
        return out

    @torch.no_grad()
    def flush(self) -> list[int]:
        """Encode what is left (a partial block) and reset the stream."""
        out = self._block(self.buffer) if self.buffer.shape[-1] else []
        self.reset()
        return out

    def _block(self, mel: torch.Tensor) -> list[int]:
        model, stem = self.model, self.model.conv_stem
        frames = (mel.shape[-1] + 1) // 2
        if self.frames_done + frames > model.config.max_source_positions:
            raise ValueError(
                f"stream longer than the model's {model.config.max_source_positions} frames; flush() and start anew"
            )
        x = torch.cat([self.mel_context, mel], dim=-1)
        self.mel_context = x[..., -2:]
        h = torch.cat([self.conv_context, F.gelu(stem.conv1(x))], dim=-1)
        self.conv_context = h[..., -2:]
        hidden = F.gelu(stem.conv2(h)).transpose(1, 2)
        hidden = hidden + model.embed_positions(frames, offset=self.frames_done).to(hidden.dtype)
        # keys = every cached frame + this block: block-causal by construction; a window still needs a mask
        keys = torch.ones(1, self.frames_done + frames, dtype=torch.bool, device=hidden.device)
        eager = model.config._attn_implementation == "eager"
        mask = encoder_attention_mask(
            keys, None, model.config.attention_window, hidden.dtype, eager=eager, offset=self.frames_done
        )
        for layer in model.layers:
            hidden = layer(hidden, mask, cache=self.cache)
        self.frames_done += frames
        valid = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        z = model.quantizer.project(masked_average_pool(hidden, valid, model.config.pooling_kernel_size))
        return model.quantizer.nearest(z)[0].tolist()


__all__ = ["SpeechTokenizerStreamingEncoder"]

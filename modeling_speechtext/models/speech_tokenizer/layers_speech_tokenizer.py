"""Building blocks of the speech tokenizer's encoder: conv stem, fixed positions, attention masks, pooling.

The Whisper layers themselves are transformers' `WhisperEncoderLayer`; what is new around them is here: a conv
stem that can be causal and ignores padding, sinusoid tables that survive `from_pretrained`, the block-causal /
windowed masks that make streaming exact, and length-exact average pooling down to the token rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_speech_tokenizer import SpeechTokenizerConfig


class SpeechTokenizerConvStem(nn.Module):
    """Whisper's two-conv stem (100 Hz mel -> 50 Hz), optionally causal (all padding on the left).

    Padded mel frames are zeroed before each conv, so a batched clip sees exactly the zeros that a clip encoded
    alone sees as conv padding: tokens do not depend on what it is batched with.
    """

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(config.num_mel_bins, config.d_model, kernel_size=3)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, kernel_size=3, stride=2)
        self.padding = (2, 0) if config.causal_conv else (1, 1)

    def forward(self, input_features: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
        mask = mel_mask[:, None, :].to(input_features.dtype)
        hidden = F.gelu(self.conv1(F.pad(input_features * mask, self.padding)))
        hidden = F.gelu(self.conv2(F.pad(hidden * mask.to(hidden.dtype), self.padding)))
        return hidden.transpose(1, 2)


class SpeechTokenizerSinusoidalPositions(nn.Embedding):
    """A fixed sinusoid position table (Whisper's), as its own class so that `_init_weights` recognises it.

    transformers skips `_init_weights` for a custom-code module without parameters of its own (the whole model),
    so filling the tables from the model level silently left them at the generic N(0, 0.02) embedding init:
    frozen noise that carried no position at all.
    """

    def __init__(self, num_positions: int, dim: int):
        super().__init__(num_positions, dim)
        self.weight.requires_grad_(False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        """Rows `offset .. offset + length`, detached: fixed even where `from_pretrained` made them trainable."""
        return self.weight[offset : offset + length].detach()


def encoder_attention_mask(
    valid: torch.Tensor,
    block: int | None,
    window: int | None,
    dtype: torch.dtype,
    eager: bool = False,
    offset: int = 0,
) -> torch.Tensor | None:
    """[B, 1, T_q, T_k] mask, or None when every key may be seen (the fastest SDPA path).

    Keys must be valid (not padding); with `block`, in the query's block or an earlier one (streaming); with
    `window`, at most `window` frames away. `offset` is the absolute position of the first query (streaming:
    the keys start at 0, the queries at `offset`). SDPA takes the boolean mask; `eager` attention adds a float
    mask (0 / dtype min) to its scores.
    """
    n_keys = valid.shape[1]
    keys = torch.arange(n_keys, device=valid.device)
    queries = keys[offset:]
    allowed = None if valid.all() else valid[:, None, None, :]
    pattern = None
    if block is not None:
        pattern = (keys[None, :] // block) <= (queries[:, None] // block)
    if window is not None:
        near = (keys[None, :] - queries[:, None]).abs() <= window
        pattern = near if pattern is None else pattern & near
    if pattern is not None:
        allowed = pattern[None, None] if allowed is None else allowed & pattern[None, None]
    if allowed is None or not eager:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=valid.device).masked_fill(~allowed, torch.finfo(dtype).min)


def attention_windows(config: SpeechTokenizerConfig, post: bool) -> tuple[int | None, int | None]:
    """(block, window) of the layers before (50 Hz frames) or after (`post`, token rate) the quantizer: the
    config's `causal_block_size` / `attention_window` are in 50 Hz frames, pooled by `pooling_kernel_size`."""
    k, block, window = config.pooling_kernel_size, config.causal_block_size, config.attention_window
    if post:
        block = None if block is None else block // k
        window = None if window is None else max(1, window // k)
    return block, window


def masked_average_pool(hidden: torch.Tensor, valid: torch.Tensor, kernel: int) -> torch.Tensor:
    """Masked average over windows of `kernel` frames (a partial last window averages its own frames)."""
    pad = (-hidden.shape[1]) % kernel
    weights = valid.to(hidden.dtype)[..., None]
    summed = F.pad(hidden * weights, (0, 0, 0, pad)).unflatten(1, (-1, kernel)).sum(2)
    counts = F.pad(weights, (0, 0, 0, pad)).unflatten(1, (-1, kernel)).sum(2)
    return summed / counts.clamp_min(1)


__all__ = [
    "SpeechTokenizerConvStem",
    "attention_windows",
    "SpeechTokenizerSinusoidalPositions",
    "encoder_attention_mask",
    "masked_average_pool",
]

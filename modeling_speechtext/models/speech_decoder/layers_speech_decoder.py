"""Building blocks of the speech decoder: rotary positions, block-causal masks, attention and transformer layers.

Shared by the token encoder (12.5 Hz) and the flow-matching estimator (mel frame rate). Block-causal masks are
what make streaming exact: a position sees its own block and earlier ones, never a later block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_speech_decoder import SpeechDecoderConfig


def rotary_cos_sin(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin `[len(positions), dim]` for absolute `positions` (rotary embeddings see only differences)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None] * inv_freq[None]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def block_attention_mask(
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    block: int,
    context_blocks: int = 0,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask `[batch or 1, 1, queries, keys]`, True = may attend.

    A query sees keys in its own block and earlier blocks (all keys when `block == 0`), at most
    `context_blocks` blocks back (unbounded when 0), minus padded keys. It always sees itself, so no row is
    empty (an empty row would make softmax NaN, and NaN leaks through masked keys in the next layer).
    """
    q = query_positions[:, None]
    k = key_positions[None, :]
    if block:
        qb, kb = torch.div(q, block, rounding_mode="floor"), torch.div(k, block, rounding_mode="floor")
        allowed = kb <= qb
        if context_blocks:
            allowed = allowed & (kb >= qb - context_blocks)
    else:
        allowed = torch.ones(q.shape[0], k.shape[1], dtype=torch.bool, device=q.device)
    allowed = allowed[None, None]
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, None, :]
    return allowed | (q == k)[None, None]


class SpeechDecoderAttention(nn.Module):
    """Multi-head self-attention with rotary positions and an optional per-stream key/value cache."""

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__()
        self.config = config  # read at call time: `attn_implementation` / `set_attn_implementation` take effect
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, cos, sin, mask, cache: dict | None = None):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if getattr(self.config, "_attn_implementation", None) == "eager":
            # the plain formula: for debugging, attention maps, and backends without a fused kernel
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            y = scores.softmax(dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class SpeechDecoderLayer(nn.Module):
    """Pre-norm transformer layer; with `modulated=True` the norms are shifted/scaled by a conditioning
    vector (the flow time), as in DiT: cheap and effective time conditioning for the estimator."""

    def __init__(self, config: SpeechDecoderConfig, modulated: bool = False):
        super().__init__()
        h = config.hidden_size
        self.attn_norm = nn.LayerNorm(h, elementwise_affine=not modulated)
        self.attn = SpeechDecoderAttention(config)
        self.mlp_norm = nn.LayerNorm(h, elementwise_affine=not modulated)
        self.mlp = nn.Sequential(
            nn.Linear(h, config.intermediate_size), nn.GELU(), nn.Linear(config.intermediate_size, h)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.modulation = nn.Linear(h, 4 * h) if modulated else None

    def forward(self, x, cos, sin, mask, cond: torch.Tensor | None = None, cache: dict | None = None):
        a, b = self.attn_norm(x), None
        if self.modulation is not None:
            s1, b1, s2, b2 = self.modulation(cond)[:, None].chunk(4, dim=-1)
            a = a * (1 + s1) + b1
        x = x + self.dropout(self.attn(a, cos, sin, mask, cache))
        b = self.mlp_norm(x)
        if self.modulation is not None:
            b = b * (1 + s2) + b2
        return x + self.dropout(self.mlp(b))


__all__ = ["SpeechDecoderAttention", "SpeechDecoderLayer", "apply_rotary", "block_attention_mask", "rotary_cos_sin"]

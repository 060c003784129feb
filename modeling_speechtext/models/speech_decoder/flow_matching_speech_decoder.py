"""The flow-matching network of the speech decoder: `(x_t, t, mu) -> velocity` over mel frames, block-causal.

Time enters through DiT-style modulated layer norms; the sampler's time grid (`flow_schedule`) and the training
time distribution share one definition (`"cosine"`: finer steps near the noise end, as in CosyVoice).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_speech_decoder import SpeechDecoderConfig
from .layers_speech_decoder import SpeechDecoderLayer, block_attention_mask, rotary_cos_sin


def flow_schedule(num_steps: int, kind: str, device: torch.device) -> torch.Tensor:
    t = torch.linspace(0, 1, num_steps + 1, device=device)
    return 1 - torch.cos(t * 0.5 * math.pi) if kind == "cosine" else t


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time t in [0, 1] (scaled by 1000 like diffusion step indices)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class SpeechDecoderEstimator(nn.Module):
    """The flow-matching network: `(x_t, t, mu) -> velocity`, all `[batch, frames, ...]`, block-causal."""

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.time_mlp = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.in_proj = nn.Linear(config.n_mels, h)
        self.layers = nn.ModuleList(
            [SpeechDecoderLayer(config, modulated=True) for _ in range(config.estimator_layers)]
        )
        self.norm = nn.LayerNorm(h)
        self.out_proj = nn.Linear(h, config.n_mels)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        mu: torch.Tensor,
        positions: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        cache: list[dict] | None = None,
        key_start: int = 0,
    ) -> torch.Tensor:
        """`positions`: absolute frame indices of `x`. With `cache` (one dict per layer), keys of earlier frames
        `key_start .. positions[0]` come from the cache and the new ones are appended."""
        c = self.config
        cos, sin = rotary_cos_sin(positions, c.hidden_size // c.num_attention_heads, c.rope_theta)
        key_positions = torch.arange(key_start, int(positions[-1]) + 1, device=x.device) if cache else positions
        block = c.block_size * c.frames_per_token
        mask = block_attention_mask(positions, key_positions, block, c.context_blocks, frame_mask)
        cond = F.silu(self.time_mlp(timestep_embedding(t, c.hidden_size)))
        hidden = self.in_proj(x) + mu
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, mask, cond, cache[i] if cache else None)
        return self.out_proj(self.norm(hidden))


__all__ = ["SpeechDecoderEstimator", "flow_schedule", "timestep_embedding"]

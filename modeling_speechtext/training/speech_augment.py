"""Training-time augmentation of cached log-mel features, aimed at voices the tokenizer has never heard.

The tiny tokenizer reads its 34 training voices almost perfectly but held-out voices far worse, i.e. it learns
the voices rather than the words. Two classic remedies act directly on the cached features (no audio, no STFT):

- **mel warping** (in the spirit of vocal tract length perturbation, Jaitly & Hinton 2013): stretch or squeeze
  the mel axis by a random factor per utterance, which moves formants the way a longer or shorter vocal tract
  does -- a cheap way to invent new speakers;
- **SpecAugment** (Park et al. 2019) frequency and time masks, through torchaudio's iid masking.

Both are off by default; the presets switch them on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FeatureAugmentation:
    """How strongly to perturb a training batch; all zero = identity."""

    mel_warp: float = 0.0  # warp factor drawn from [1 - mel_warp, 1 + mel_warp]
    freq_masks: int = 0
    freq_mask_width: int = 0  # up to this many mel bins per mask
    time_masks: int = 0
    time_mask_width: int = 0  # up to this many 10 ms frames per mask

    def __post_init__(self):
        if not 0.0 <= self.mel_warp < 0.5:
            raise ValueError(f"mel_warp must be in [0, 0.5), got {self.mel_warp}")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return (
            self.mel_warp > 0
            or self.freq_masks * self.freq_mask_width > 0
            or self.time_masks * self.time_mask_width > 0
        )


def warp_mel(features: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Resample each utterance's mel axis by its factor (>1 moves energy up, like a shorter vocal tract).

    Hand-written because torchaudio has no feature-domain VTLP; it is one linear interpolation per row.
    Bins that the warp pulls in from beyond the top edge repeat the top bin.
    """
    batch, n_mels, _ = features.shape
    source = torch.arange(n_mels, dtype=features.dtype, device=features.device)[None, :] / factors[:, None]
    source = source.clamp(0, n_mels - 1)  # [B, n_mels] fractional source bins
    low = source.floor().long()
    high = (low + 1).clamp(max=n_mels - 1)
    weight = (source - low.to(source.dtype))[:, :, None]
    gather = lambda index: torch.gather(features, 1, index[:, :, None].expand(-1, -1, features.shape[-1]))  # noqa: E731
    return gather(low) * (1 - weight) + gather(high) * weight


def augment_features(features: torch.Tensor, attention_mask: torch.Tensor, aug: FeatureAugmentation) -> torch.Tensor:
    """A perturbed copy of `features [B, n_mels, T]` (torch's global RNG, seeded by the recipe).

    Padding frames (mask 0) stay untouched; masks are filled with the batch's silence level (its minimum), so a
    masked band looks like missing energy rather than a loud constant.
    """
    import torchaudio.functional as AF

    if features.dim() != 3 or attention_mask.shape != (features.shape[0], features.shape[-1]):
        raise ValueError(
            f"expected features [batch, n_mels, frames] and attention_mask [batch, frames], got "
            f"{tuple(features.shape)} and {tuple(attention_mask.shape)}"
        )
    if not aug.enabled:
        return features
    out = features
    if aug.mel_warp > 0:
        u = torch.rand(features.shape[0]) * 2 - 1
        out = warp_mel(out, (1 + aug.mel_warp * u).to(features.dtype))
    fill = float(features.amin())
    out = out[:, None]  # torchaudio's iid masks want [batch, channel, freq, time]
    for _ in range(aug.freq_masks if aug.freq_mask_width else 0):
        out = AF.mask_along_axis_iid(out, aug.freq_mask_width, fill, axis=2)
    for _ in range(aug.time_masks if aug.time_mask_width else 0):
        out = AF.mask_along_axis_iid(out, aug.time_mask_width, fill, axis=3, p=0.2)  # <= 20% of the frames
    out = out[:, 0]
    return torch.where(attention_mask[:, None, :] == 0, features, out)


__all__ = ["FeatureAugmentation", "augment_features", "warp_mel"]

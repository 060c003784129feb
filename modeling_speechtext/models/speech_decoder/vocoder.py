"""Vocoders of the speech decoder: log-mel -> waveform, offline and streamed (the analysis, waveform -> log-mel,
is the feature extractor's: `feature_extraction_speech_decoder.py`).

The default vocoder is Griffin-Lim (no weights, so every preset works without a vocoder training run). It is
pluggable: any `nn.Module` mapping a log-mel `[batch, n_mels, frames]` to a waveform `[batch, frames * hop]`
(a HiFi-GAN, say) can replace it through `SpeechDecoderModel.set_vocoder`.

Filterbanks and windows are built lazily, not registered as buffers: transformers builds models on the meta
device, and a non-persistent buffer would hold garbage after `from_pretrained`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .feature_extraction_speech_decoder import mel_filterbank


def griffin_lim(
    magnitude: torch.Tensor,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    n_iter: int = 32,
    momentum: float = 0.99,
    length: int | None = None,
    prefix: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) with an optional known `prefix` of the waveform.

    `magnitude` is `[batch, n_freqs, frames]`. With `prefix` (`[batch, p]` samples), the first `p` samples
    are pinned to it after every iteration: the phase of the new frames is then estimated *consistently
    with audio already played*, which is what lets streamed chunks join without a phase jump.
    """
    win_length = window.shape[0]
    kwargs = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=True)
    shape = magnitude.shape
    phase = torch.rand(shape, generator=generator, device=magnitude.device) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(magnitude), phase)
    p = 0 if prefix is None else min(prefix.shape[-1], length or prefix.shape[-1])
    if p:
        padded = torch.zeros(shape[0], length, device=magnitude.device)
        padded[:, :p] = prefix[:, :p]
        known = torch.stft(padded, return_complex=True, **kwargs)
        # frames whose window lies inside the known audio take its phase as the starting point
        full = max(0, min(shape[-1], (p - n_fft // 2) // hop_length + 1))
        angles[..., :full] = known[..., :full] / (known[..., :full].abs() + 1e-16)
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        wave = torch.istft(magnitude * angles, length=length, **kwargs)
        if p:
            wave[:, :p] = prefix[:, :p]
        rebuilt = torch.stft(wave, return_complex=True, **kwargs)
        angles = rebuilt - previous * (momentum / (1 + momentum)) if momentum else rebuilt
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    wave = torch.istft(magnitude * angles, length=length, **kwargs)
    if p:
        wave[:, :p] = prefix[:, :p]
    return wave


class GriffinLimVocoder(nn.Module):
    """Log-mel `[batch, n_mels, frames]` -> waveform `[batch, frames * hop]`; no weights.

    Mel -> linear magnitude by the filterbank's pseudo-inverse (clamped at 0), then fast Griffin-Lim.
    `forward(..., prefix=...)` continues a waveform already emitted (see `griffin_lim`).
    """

    supports_prefix = True

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        n_iter: int = 32,
        momentum: float = 0.99,
        seed: int = 0,
    ):
        super().__init__()
        self.sampling_rate, self.n_fft, self.win_length, self.hop_length = sampling_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max, self.n_iter, self.momentum = n_mels, f_min, f_max, n_iter, momentum
        self.seed = seed
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_config(cls, config) -> GriffinLimVocoder:
        return cls(
            config.sampling_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels,
            config.f_min, config.f_max, config.griffin_lim_iters, config.griffin_lim_momentum,
        )  # fmt: skip

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            window = torch.hann_window(self.win_length, device=device)
            fb = mel_filterbank(self.n_fft, self.n_mels, self.sampling_rate, self.f_min, self.f_max)
            self._cache[device] = (window, torch.linalg.pinv(fb.T.double()).float().to(device))  # [n_freqs, n_mels]
        return self._cache[device]

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        window, inverse = self._tensors(log_mel.device)
        magnitude = torch.clamp(torch.einsum("fm,bmt->bft", inverse, log_mel.float().exp()), min=0.0)
        # `frames * hop` centered samples have frames + 1 STFT frames: repeat the last one
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        generator = torch.Generator(device=log_mel.device).manual_seed(self.seed)
        length = log_mel.shape[-1] * self.hop_length
        return griffin_lim(
            magnitude, self.n_fft, self.hop_length, window, self.n_iter, self.momentum, length, prefix, generator
        )


VOCODERS: dict[str, type[nn.Module]] = {"griffin_lim": GriffinLimVocoder}
"""Vocoders buildable from `SpeechDecoderConfig.vocoder_type` (each with `from_config(config)`)."""


def build_vocoder(config) -> nn.Module:
    if config.vocoder_type not in VOCODERS:
        raise ValueError(f"unknown vocoder_type {config.vocoder_type!r}; registered: {sorted(VOCODERS)}")
    return VOCODERS[config.vocoder_type].from_config(config)


class StreamingVocoder:
    """Turns mel chunks into audio chunks that join without clicks.

    Each new chunk is vocoded together with `context_frames` of earlier mel; a vocoder that supports it gets
    the earlier audio as a pinned prefix (phase continuity). The last `crossfade` samples of every chunk are
    held back and cross-faded with the re-synthesised start of the next one; `flush` emits them.
    Output = frames * hop samples in total, the same length as an offline decode.
    """

    def __init__(self, vocoder: nn.Module, hop_length: int, context_frames: int = 16, crossfade: int = 320):
        self.vocoder, self.hop = vocoder, hop_length
        # the re-synthesised context must cover the held-back tail
        self.context_frames, self.crossfade = max(context_frames, math.ceil(crossfade / hop_length)), crossfade
        self.mel: torch.Tensor | None = None  # [n_mels, frames] so far
        self.audio = torch.zeros(0)  # everything synthesised so far (emitted + held back)
        self.emitted = 0

    def push(self, mel: torch.Tensor, final: bool = False) -> torch.Tensor:
        """`mel`: `[n_mels, new_frames]`; returns the audio that is now final (1-D)."""
        prev_frames = 0 if self.mel is None else self.mel.shape[-1]
        self.mel = mel if self.mel is None else torch.cat([self.mel, mel], dim=-1)
        start = max(0, prev_frames - self.context_frames)
        segment = self.mel[None, :, start:]
        s0, s1 = start * self.hop, prev_frames * self.hop
        if getattr(self.vocoder, "supports_prefix", False) and s1 > s0:
            # pin the earlier audio except the held-back tail, which gets re-synthesised for the crossfade
            pinned = max(s0, self.emitted) - s0
            wave = self.vocoder(segment, prefix=self.audio[None, s0 : s0 + pinned])[0]
        else:
            wave = self.vocoder(segment)[0]
        wave = wave.to(self.audio.dtype)
        fade = self.audio.shape[0] - self.emitted  # the held-back tail of the previous chunk
        if fade > 0:
            # raised-cosine fade (gains sum to 1): the two estimates are phase-coherent thanks to the prefix
            fade_in = torch.sin(0.5 * math.pi * torch.linspace(0, 1, fade + 2)[1:-1]) ** 2
            fade_out = 1.0 - fade_in
            old = self.audio[self.emitted :]
            new = wave[self.emitted - s0 : self.emitted - s0 + fade]
            self.audio[self.emitted :] = old * fade_out + new * fade_in
        self.audio = torch.cat([self.audio, wave[s1 - s0 :]])
        return self._emit(final)

    def flush(self) -> torch.Tensor:
        return self._emit(final=True)

    def _emit(self, final: bool) -> torch.Tensor:
        end = self.audio.shape[0] if final else max(self.emitted, self.audio.shape[0] - self.crossfade)
        out = self.audio[self.emitted : end].clone()
        self.emitted = end
        return out


__all__ = ["griffin_lim", "GriffinLimVocoder", "VOCODERS", "build_vocoder", "StreamingVocoder"]

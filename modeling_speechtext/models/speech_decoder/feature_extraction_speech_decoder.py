"""The speech decoder's feature extractor: waveform -> the natural-log mel the decoder is trained to produce.

Mel analysis is a feature extractor's job, not the model's: it needs no weights, the training recipe runs it over
a corpus before any model exists, and users of a saved decoder folder get it with
`AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)` (`SpeechDecoderModel.save_pretrained`
writes `preprocessor_config.json` from the model's config, so the two cannot disagree).

The analysis is torch's STFT (centered, Hann window) + torchaudio's HTK mel filterbank, `log(max(mel, 1e-5))`:
the vocoder inverts exactly this filterbank. Each clip is analysed alone and then cut or padded with the log-mel
of silence, so a clip's mel never depends on the clips it is batched with.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

logger = logging.get_logger(__name__)


def mel_filterbank(n_fft: int, n_mels: int, sampling_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """`[n_freqs, n_mels]`, HTK scale, no area normalisation (the default of torchaudio's `MelSpectrogram`)."""
    import torchaudio

    return torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sampling_rate)


class LogMelSpectrogram(nn.Module):
    """Waveform `[batch, samples]` (or `[samples]`) -> natural-log magnitude mel `[batch, n_mels, frames]`.

    Centered frames: frame `j` is centered on sample `j * hop_length`, so `samples // hop + 1` frames; the
    decoder keeps `n_tokens * frames_per_token` of them. Window and filterbank are built lazily per device, not
    registered as buffers: transformers builds models on the meta device, where a buffer would hold garbage.
    """

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        clamp_min: float = 1e-5,
    ):
        super().__init__()
        self.sampling_rate, self.n_fft, self.win_length, self.hop_length = sampling_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max, self.clamp_min = n_mels, f_min, f_max, clamp_min
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_config(cls, config) -> LogMelSpectrogram:
        return cls(
            config.sampling_rate, config.n_fft, config.win_length, config.hop_length, config.n_mels,
            config.f_min, config.f_max,
        )  # fmt: skip

    @property
    def silence(self) -> float:
        """The log-mel value of digital silence (used to pad targets)."""
        return math.log(self.clamp_min)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            window = torch.hann_window(self.win_length, device=device)
            fb = mel_filterbank(self.n_fft, self.n_mels, self.sampling_rate, self.f_min, self.f_max).to(device)
            self._cache[device] = (window, fb)
        return self._cache[device]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        squeeze = waveform.dim() == 1
        waveform = waveform.float().reshape(-1, waveform.shape[-1])
        window, fb = self._tensors(waveform.device)
        spec = torch.stft(
            waveform, self.n_fft, self.hop_length, self.win_length, window, center=True, return_complex=True
        ).abs()
        mel = torch.log(torch.clamp(torch.einsum("bft,fm->bmt", spec, fb), min=self.clamp_min))
        return mel[0] if squeeze else mel


class SpeechDecoderFeatureExtractor(SequenceFeatureExtractor):
    r"""Log-mel targets of the speech decoder, `[frames, n_mels]` per clip (time first, as the model's mels).

    Args:
        feature_size (`int`, defaults to 80): mel bins (`n_mels` of the decoder config).
        sampling_rate (`int`, defaults to 16000): the audio rate the analysis expects; audio at another rate is
            refused (pass `sampling_rate=` when calling, as with any transformers extractor).
        n_fft, win_length, hop_length, f_min, f_max: the STFT and filterbank (as `SpeechDecoderConfig`).
        tokens_per_second (`float`, defaults to 12.5): the speech token rate, so `num_tokens=` can cut or pad a mel
            to exactly `num_tokens * frames_per_token` frames (what the decoder is trained on).
        clamp_min (`float`, defaults to 1e-5): floor before the log; `log(clamp_min)` is silence and the padding.
    """

    model_input_names = ["mel", "mel_lengths"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        tokens_per_second: float = 12.5,
        clamp_min: float = 1e-5,
        **kwargs,
    ):
        kwargs.setdefault("return_attention_mask", False)
        kwargs.pop("padding_value", None)  # always the silence of `clamp_min` (a saved config repeats it)
        super().__init__(feature_size, sampling_rate, padding_value=math.log(clamp_min), **kwargs)
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.f_min, self.f_max, self.tokens_per_second, self.clamp_min = f_min, f_max, tokens_per_second, clamp_min

    @classmethod
    def from_config(cls, config) -> SpeechDecoderFeatureExtractor:
        """The extractor matching a `SpeechDecoderConfig` (what the model saves next to its weights)."""
        return cls(
            feature_size=config.n_mels, sampling_rate=config.sampling_rate, n_fft=config.n_fft,
            win_length=config.win_length, hop_length=config.hop_length, f_min=config.f_min, f_max=config.f_max,
            tokens_per_second=config.tokens_per_second,
        )  # fmt: skip

    @property
    def frames_per_token(self) -> int:
        return round(self.sampling_rate / self.hop_length / self.tokens_per_second)

    @property
    def silence(self) -> float:
        return self.padding_value

    @property
    def analysis(self) -> LogMelSpectrogram:
        """The mel analysis module (cached: its filterbank is built once per device)."""
        if getattr(self, "_analysis", None) is None:
            self._analysis = LogMelSpectrogram(
                self.sampling_rate, self.n_fft, self.win_length, self.hop_length, self.feature_size,
                self.f_min, self.f_max, self.clamp_min,
            )  # fmt: skip
        return self._analysis

    def mel(self, waveform, num_tokens: int | None = None) -> torch.Tensor:
        """One 1-D waveform -> log-mel `[frames, n_mels]`, cut or padded with silence to `num_tokens` tokens."""
        mel = self.analysis(torch.as_tensor(waveform, dtype=torch.float32).reshape(-1)).T
        if num_tokens is not None:
            frames = num_tokens * self.frames_per_token
            mel = mel[:frames]
            if mel.shape[0] < frames:
                mel = torch.cat([mel, mel.new_full((frames - mel.shape[0], mel.shape[1]), self.silence)])
        return mel

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        num_tokens: int | list[int] | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """One clip or a list of clips (1-D arrays/tensors) -> `mel` `[batch, frames, n_mels]` right-padded with
        silence, and `mel_lengths` (valid frames per clip). `num_tokens` (one per clip) fixes each clip's length
        to `num_tokens * frames_per_token` frames, as the decoder's training targets are."""
        if sampling_rate is None:
            logger.warning(
                f"pass sampling_rate= to {type(self).__name__}: the audio is assumed to be at {self.sampling_rate} Hz,"
                " and audio at another rate gives silently wrong mels"
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"the audio is at {sampling_rate} Hz but this feature extractor (and its decoder) expects "
                f"{self.sampling_rate} Hz; resample it first"
            )
        single = (isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 1) or (
            isinstance(raw_speech, (list, tuple)) and (not raw_speech or np.isscalar(raw_speech[0]))
        )
        clips = [raw_speech] if single else list(raw_speech)
        if not clips:
            raise ValueError("no audio given")
        counts = [num_tokens] * len(clips) if num_tokens is None or isinstance(num_tokens, int) else list(num_tokens)
        if len(counts) != len(clips):
            raise ValueError(f"got {len(counts)} num_tokens for {len(clips)} clips")
        mels = [self.mel(clip, n) for clip, n in zip(clips, counts)]
        longest = max(m.shape[0] for m in mels)
        batch = torch.full((len(mels), longest, self.feature_size), self.silence)
        for i, m in enumerate(mels):
            batch[i, : m.shape[0]] = m
        lengths = torch.tensor([m.shape[0] for m in mels])
        return BatchFeature({"mel": batch.numpy(), "mel_lengths": lengths.numpy()}, tensor_type=return_tensors)

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.pop("_analysis", None)  # a cached module, rebuilt from the fields above
        return output


SpeechDecoderFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["LogMelSpectrogram", "SpeechDecoderFeatureExtractor", "mel_filterbank"]

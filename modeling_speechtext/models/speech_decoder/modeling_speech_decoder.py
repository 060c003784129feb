"""Speech decoder: speech tokens (12.5 Hz) -> log-mel by conditional flow matching -> waveform.

The CosyVoice-style decoder of GLM-4-Voice (PAPER.md §2), small enough to train on a CPU:

    token embedding -> block-causal transformer encoder (12.5 Hz)
      -> length regulator (repeat `frames_per_token` times + a learned position-in-token embedding)
      -> flow-matching estimator (block-causal transformer over mel frames, time-modulated layer norms)
         integrated with Euler steps from noise, optional classifier-free guidance
      -> vocoder (Griffin-Lim by default, pluggable).

Streaming is exact by construction: every attention is block-causal (a position sees its own block and
earlier ones), the noise is drawn token by token from a seeded generator, and the estimator keeps one
key/value cache per Euler step. A chunk that ends on a block border is therefore decoded from the past
alone, and `decode_stream` produces the same mel as `decode`; only the vocoder joins chunks (with the
earlier audio as phase context and a short crossfade).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_speech_decoder import SpeechDecoderConfig
from .feature_extraction_speech_decoder import LogMelSpectrogram, SpeechDecoderFeatureExtractor
from .flow_matching_speech_decoder import SpeechDecoderEstimator, flow_schedule
from .streaming_speech_decoder import SpeechDecoderStreamingMixin
from .token_encoder_speech_decoder import SpeechDecoderLengthRegulator, SpeechDecoderTokenEncoder
from .vocoder import build_vocoder


@dataclass
class SpeechDecoderOutput(ModelOutput):
    """Training output.

    Args:
        loss: flow-matching MSE on the velocity (or L1 on the mel for `objective="regression"`), masked frames.
        prediction: the network output `[batch, frames, n_mels]` (velocity or normalised mel).
        frame_mask: `[batch, frames]` valid mel frames.
        mel_estimate: the normalised mel this step implies `[batch, frames, n_mels]`: the prediction itself for
            regression, the one-step flow estimate `x_t + (1 - t) v` for flow matching (what an extra loss on the
            decoded mel, such as `TokenConsistencyLoss`, can be applied to).
        estimate_weight: `[batch]` how much each row's estimate says about the sample: `t` for flow matching
            (at `t = 0` it is only the conditional mean), 0 for rows whose condition was dropped for guidance.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    frame_mask: torch.Tensor | None = None
    mel_estimate: torch.Tensor | None = None
    estimate_weight: torch.Tensor | None = None


@dataclass
class SpeechDecoderMelOutput(ModelOutput):
    """`generate_mel` output: natural-log mel `[batch, frames, n_mels]` and the valid frames per item."""

    mel: torch.Tensor | None = None
    mel_lengths: torch.Tensor | None = None


def _is_nested(ids) -> bool:
    """True for a batch (list of token lists / arrays / 1-D tensors), False for one token list."""
    if isinstance(ids, torch.Tensor):
        return ids.dim() == 2
    if getattr(ids, "ndim", 1) == 2:
        return True
    first = next(iter(ids), None)
    return first is not None and getattr(first, "ndim", 0 if not isinstance(first, Sequence) else 1) >= 1


class SpeechDecoderPreTrainedModel(PreTrainedModel):
    config_class = SpeechDecoderConfig
    base_model_prefix = "speech_decoder"
    main_input_name = "input_ids"
    _no_split_modules = ["SpeechDecoderLayer"]
    _supports_sdpa = True  # the default; `attn_implementation="eager"` takes the explicit softmax path


class SpeechDecoderModel(SpeechDecoderStreamingMixin, SpeechDecoderPreTrainedModel):
    """Speech tokens -> waveform. See the module docstring for the architecture and why streaming is exact.

    Mel tensors of this class are `[batch, frames, n_mels]` natural-log magnitude mel; the vocoder takes the
    torchaudio layout `[batch, n_mels, frames]`.
    """

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__(config)
        self.encoder = SpeechDecoderTokenEncoder(config)
        self.length_regulator = SpeechDecoderLengthRegulator(config)
        self.voice_embed = nn.Embedding(config.num_voices, config.hidden_size) if config.num_voices else None
        self.estimator = SpeechDecoderEstimator(config)
        # Grad-TTS-style prior: a coarse mel from the condition, where the flow starts (see the config)
        self.prior_head = nn.Linear(config.hidden_size, config.n_mels) if config.prior_loss_weight > 0 else None
        self.vocoder = build_vocoder(config)
        self.post_init()
        self.freeze_tokenizer_states()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the copy of the tokenizer's layers frozen again (loading
        re-creates parameters trainable; the optimiser must never see them)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        model.freeze_tokenizer_states()
        return loaded

    def freeze_tokenizer_states(self) -> None:
        if self.encoder.tokenizer_states is not None:
            self.encoder.tokenizer_states.requires_grad_(False)

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def feature_extractor(self) -> SpeechDecoderFeatureExtractor:
        """The mel analysis of this decoder's targets (built from the config; saved with the model)."""
        if not hasattr(self, "_feature_extractor"):
            self._feature_extractor = SpeechDecoderFeatureExtractor.from_config(self.config)
        return self._feature_extractor

    @property
    def mel_extractor(self) -> LogMelSpectrogram:
        """The feature extractor's analysis module (`silence`, `[batch, n_mels, frames]` mels)."""
        return self.feature_extractor.analysis

    def set_vocoder(self, vocoder: nn.Module) -> None:
        """Swap the vocoder: any module mapping log-mel `[batch, n_mels, frames]` -> wave `[batch, frames*hop]`."""
        self.vocoder = vocoder

    def extract_mel(self, waveform, num_tokens: int | None = None) -> torch.Tensor:
        """Training target: log-mel `[frames, n_mels]` of a 1-D waveform at `config.sampling_rate`, cut or padded
        (with silence) to `num_tokens * frames_per_token` frames when `num_tokens` is given. The feature
        extractor's work (`feature_extraction_speech_decoder.py`), kept here for callers that hold the model."""
        return self.feature_extractor.mel(waveform, num_tokens)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` + the feature extractor (`preprocessor_config.json`, from the config),
        written first so that `push_to_hub=True` uploads it too."""
        if kwargs.get("is_main_process", True) and not os.path.isfile(save_directory):
            SpeechDecoderFeatureExtractor.from_config(self.config).save_pretrained(save_directory)
        return super().save_pretrained(save_directory, *args, **kwargs)

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.config.mel_mean) / self.config.mel_std

    def denormalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.config.mel_std + self.config.mel_mean

    def check_speech_tokenizer(self, tokenizer_config) -> None:
        """Raise if tokens of this tokenizer (a config or model) cannot be decoded by this decoder. A decoder
        conditioned on the tokenizer's states also refuses another architecture and, given the model, another
        codebook (a different tokenizer of the same sizes: its ids mean other sounds)."""
        tokenizer = tokenizer_config
        tokenizer_config = getattr(tokenizer_config, "config", tokenizer_config)
        states = self.encoder.tokenizer_states
        if states is not None:
            for key in ("d_model", "encoder_layers", "quantize_position"):
                theirs, mine = getattr(tokenizer_config, key, None), getattr(states.config, key)
                if theirs is not None and theirs != mine:
                    raise ValueError(f"speech tokenizer {key}={theirs} does not match the tokenizer this decoder "
                                     f"was conditioned on ({key}={mine})")  # fmt: skip
            codebook = getattr(getattr(tokenizer, "quantizer", None), "codebook", None)
            if codebook is not None and (
                codebook.shape != states.codebook.shape
                or not torch.allclose(codebook.float().cpu(), states.codebook.float().cpu(), atol=1e-4)
            ):
                raise ValueError("this speech tokenizer's codebook differs from the one the decoder was conditioned "
                                 "on: a different tokenizer (its ids mean other sounds)")  # fmt: skip
        size = getattr(tokenizer_config, "codebook_size", None)
        if size is not None and size != self.config.codebook_size:
            raise ValueError(
                f"speech tokenizer codebook_size={size} does not match this decoder's codebook_size="
                f"{self.config.codebook_size}: the decoder was trained on another tokenizer's ids"
            )
        rate = getattr(tokenizer_config, "tokens_per_second", None)
        if rate is not None and abs(float(rate) - self.config.tokens_per_second) > 1e-6:
            raise ValueError(
                f"speech tokenizer emits {rate} tokens/s but this decoder expects {self.config.tokens_per_second}"
            )

    def _check_ids(self, ids: Sequence[int] | torch.Tensor, codebook_size: int | None = None, what: str = "") -> None:
        if codebook_size is not None and codebook_size != self.config.codebook_size:
            raise ValueError(
                f"speech tokens come from a tokenizer with codebook_size={codebook_size}, but this decoder expects "
                f"codebook_size={self.config.codebook_size}"
            )
        ids = torch.as_tensor(ids)
        if ids.numel() == 0:
            raise ValueError(f"empty speech token list{what}: nothing to decode")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"speech token ids{what} must be integers, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.config.codebook_size)
        if bad.any():
            position = int(bad.reshape(-1).nonzero()[0])
            raise ValueError(
                f"speech token id {int(ids.reshape(-1)[position])} at position {position}{what} is out of range "
                f"[0, {self.config.codebook_size}) (decoder codebook_size={self.config.codebook_size})"
            )

    def _voice_id(self, voice: str | int | None) -> int | None:
        names = self.config.voice_names
        if not names:
            if voice not in (None, 0):
                raise ValueError(f"this decoder has a single voice; got voice={voice!r}")
            return None
        if voice is None:
            voice = self.config.default_voice or names[0]
        if isinstance(voice, str):
            if voice not in names:
                raise ValueError(f"unknown voice {voice!r}; this decoder knows {names}")
            return names.index(voice)
        if not 0 <= int(voice) < len(names):
            raise ValueError(f"voice id {voice} out of range [0, {len(names)})")
        return int(voice)

    def _condition(self, hidden: torch.Tensor, voice_ids: torch.Tensor | None) -> torch.Tensor:
        mu = self.length_regulator(hidden)
        if self.voice_embed is not None and voice_ids is not None:
            mu = mu + self.voice_embed(voice_ids)[:, None]
        return mu

    def _noise(self, generator: torch.Generator, num_tokens: int) -> torch.Tensor:
        # one draw per token, so a stream (drawing chunk by chunk) and an offline decode see the same noise
        f, m = self.config.frames_per_token, self.config.n_mels
        return torch.cat([torch.randn(f, m, generator=generator) for _ in range(num_tokens)]).to(self.device)

    # ------------------------------------------------------------------------------------------------ training
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mel: torch.Tensor | None = None,
        voice_ids: torch.Tensor | None = None,
        return_dict: bool = True,
        tokenizer_states: torch.Tensor | None = None,
        **kwargs,
    ) -> SpeechDecoderOutput | tuple:
        """Training step. `mel`: target log-mel `[batch, tokens * frames_per_token, n_mels]` (as `extract_mel`);
        `tokenizer_states`: precomputed states of the tokenizer copy for these ids (`condition` other than
        `tokens`; computed here when not given)."""
        c = self.config
        if mel is None:
            raise ValueError("forward needs the target `mel`; use generate_mel / decode for inference")
        if mel.shape[1] != input_ids.shape[1] * c.frames_per_token:
            raise ValueError(
                f"mel has {mel.shape[1]} frames but {input_ids.shape[1]} tokens need {input_ids.shape[1] * c.frames_per_token}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        frame_mask = attention_mask.bool().repeat_interleave(c.frames_per_token, dim=1)
        mu = self._condition(self.encoder(input_ids, attention_mask, tokenizer_states), voice_ids)
        positions = torch.arange(mel.shape[1], device=mel.device)
        target = self.normalize_mel(mel)
        if c.objective == "regression":
            zeros_t = torch.zeros(mel.shape[0], device=mel.device)
            prediction = self.estimator(torch.zeros_like(target), zeros_t, mu, positions, frame_mask)
            error = (prediction - target).abs()
            estimate, weight = prediction, torch.ones(mel.shape[0], device=mel.device)
        else:
            mu_full = mu
            keep = torch.ones(mu.shape[0], 1, 1, device=mu.device, dtype=torch.bool)
            if self.training and c.cfg_dropout > 0:  # drop the condition: the unconditional model for guidance
                keep = torch.rand(mu.shape[0], 1, 1, device=mu.device) >= c.cfg_dropout
                mu = mu * keep
            t = torch.rand(mel.shape[0], device=mel.device)
            if c.t_scheduler == "cosine":
                t = 1 - torch.cos(t * 0.5 * math.pi)
            noise = torch.randn_like(target)
            if self.prior_head is not None:
                prior = self.prior_head(mu_full)
                noise = noise + prior.detach()  # the prior learns from its own L1 loss only
            tt = t[:, None, None]
            x_t = (1 - (1 - c.sigma_min) * tt) * noise + tt * target
            velocity = target - (1 - c.sigma_min) * noise
            prediction = self.estimator(x_t, t, mu, positions, frame_mask)
            error = (prediction - velocity) ** 2
            # x_1 = (1 - s) x_t + (1 - (1 - s) t) v, s = sigma_min: exact for the true velocity
            estimate = (1 - c.sigma_min) * x_t + (1 - (1 - c.sigma_min) * tt) * prediction
            weight = t * keep.flatten().to(t.dtype)
            if self.prior_head is not None:
                error = error + c.prior_loss_weight * (prior - target).abs()
        m = frame_mask[..., None].to(error.dtype)
        loss = (error * m).sum() / (m.sum() * c.n_mels).clamp(min=1)
        out = SpeechDecoderOutput(
            loss=loss, prediction=prediction, frame_mask=frame_mask, mel_estimate=estimate, estimate_weight=weight
        )
        return out if return_dict else out.to_tuple()

    # ----------------------------------------------------------------------------------------------- inference
    def _velocity(self, x, t, mu, positions, frame_mask, cfg, cache=None, key_start=0):
        b = x.shape[0]
        tt = torch.full((b,), float(t), device=x.device)
        if cfg > 0:  # conditional and unconditional in one batch (and one cache)
            v = self.estimator(
                torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([mu, torch.zeros_like(mu)]), positions,
                None if frame_mask is None else torch.cat([frame_mask, frame_mask]), cache, key_start,
            )  # fmt: skip
            v_cond, v_uncond = v[:b], v[b:]
            return (1 + cfg) * v_cond - cfg * v_uncond
        return self.estimator(x, tt, mu, positions, frame_mask, cache, key_start)

    def _sample(self, mu, noise, positions, frame_mask, num_steps, cfg, caches=None, key_start=0):
        """Integrate the flow from `noise` (t=0) to the mel (t=1); returns the *normalised* mel."""
        c = self.config
        if c.objective == "regression":
            zeros = torch.zeros_like(noise)
            return self.estimator(
                zeros, torch.zeros(mu.shape[0], device=mu.device), mu, positions, frame_mask,
                caches[0] if caches else None, key_start,
            )  # fmt: skip
        grid = flow_schedule(num_steps, c.t_scheduler, mu.device)
        x = noise if self.prior_head is None else noise + self.prior_head(mu)
        for s in range(num_steps):
            v = self._velocity(x, grid[s], mu, positions, frame_mask, cfg, caches[s] if caches else None, key_start)
            x = x + (grid[s + 1] - grid[s]) * v
        return x

    @torch.no_grad()
    def generate_mel(
        self,
        input_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
        attention_mask: torch.Tensor | None = None,
        voice: str | int | None = None,
        num_steps: int | None = None,
        cfg_strength: float | None = None,
        seed: int = 0,
        codebook_size: int | None = None,
    ) -> SpeechDecoderMelOutput:
        """Tokens -> log-mel `[batch, frames, n_mels]`. Lists of unequal length are right-padded.

        `codebook_size`: the codebook size of the tokenizer that produced the ids, checked against the config.
        """
        ids, attention_mask = self._batch_ids(input_ids, attention_mask, codebook_size)
        c = self.config
        steps = c.num_steps if num_steps is None else num_steps
        cfg = c.cfg_strength if cfg_strength is None else cfg_strength
        vid = self._voice_id(voice)
        voice_ids = None if vid is None else torch.full((ids.shape[0],), vid, device=self.device)
        mu = self._condition(self.encoder(ids, attention_mask), voice_ids)
        frame_mask = attention_mask.bool().repeat_interleave(c.frames_per_token, dim=1)
        noise = torch.stack(
            [self._noise(torch.Generator().manual_seed(seed), ids.shape[1]) for _ in range(ids.shape[0])]
        )
        positions = torch.arange(mu.shape[1], device=self.device)
        mel = self.denormalize_mel(self._sample(mu, noise, positions, frame_mask, steps, cfg))
        return SpeechDecoderMelOutput(mel=mel, mel_lengths=frame_mask.sum(1))

    def _batch_ids(self, input_ids, attention_mask, codebook_size):
        if isinstance(input_ids, torch.Tensor):
            ids = input_ids if input_ids.dim() == 2 else input_ids.reshape(1, -1)
            self._check_ids(ids, codebook_size)
            mask = attention_mask if attention_mask is not None else torch.ones_like(ids)
            if int(mask.sum(1).min()) == 0:
                raise ValueError("empty speech token list in the batch: nothing to decode")
            return ids.to(self.device), mask.to(self.device)
        rows = list(input_ids) if _is_nested(input_ids) else [input_ids]
        if not rows:
            raise ValueError("empty batch of speech token lists: nothing to decode")
        for i, row in enumerate(rows):
            self._check_ids(list(row), codebook_size, what=f" (item {i})" if len(rows) > 1 else "")
        n = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.as_tensor(list(row))
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel `[batch, frames, n_mels]` -> waveform `[batch, frames * hop_length]` (float32, [-1, 1]-ish)."""
        return self.vocoder(mel.transpose(1, 2).float()).float()

    @torch.no_grad()
    def decode(self, input_ids, voice=None, num_steps=None, cfg_strength=None, seed=0, codebook_size=None):
        """Offline decode. One token list -> 1-D waveform; a batch (list of lists / 2-D tensor) -> list of 1-D
        waveforms, each `len(tokens) * samples_per_token` samples at `config.sampling_rate`."""
        single = input_ids.dim() == 1 if isinstance(input_ids, torch.Tensor) else not _is_nested(input_ids)
        out = self.generate_mel(input_ids, None, voice, num_steps, cfg_strength, seed, codebook_size)
        waves = [self.vocode(m[None, :n])[0].cpu() for m, n in zip(out.mel, out.mel_lengths.tolist())]
        return waves[0] if single else waves


SpeechDecoderConfig.register_for_auto_class()
SpeechDecoderModel.register_for_auto_class("AutoModel")

__all__ = [
    "SpeechDecoderOutput",
    "SpeechDecoderMelOutput",
    "SpeechDecoderPreTrainedModel",
    "SpeechDecoderModel",
]

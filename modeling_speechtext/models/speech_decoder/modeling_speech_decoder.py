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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_speech_decoder import SpeechDecoderConfig
from .vocoder import LogMelSpectrogram, StreamingVocoder, build_vocoder


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


# ----------------------------------------------------------------------------------------------- building blocks


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


def _is_nested(ids) -> bool:
    """True for a batch (list of token lists / arrays / 1-D tensors), False for one token list."""
    if isinstance(ids, torch.Tensor):
        return ids.dim() == 2
    if getattr(ids, "ndim", 1) == 2:
        return True
    first = next(iter(ids), None)
    return first is not None and getattr(first, "ndim", 0 if not isinstance(first, Sequence) else 1) >= 1


def _schedule(num_steps: int, kind: str, device: torch.device) -> torch.Tensor:
    t = torch.linspace(0, 1, num_steps + 1, device=device)
    return 1 - torch.cos(t * 0.5 * math.pi) if kind == "cosine" else t


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time t in [0, 1] (scaled by 1000 like diffusion step indices)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


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


class SpeechDecoderTokenEncoder(nn.Module):
    """Speech token ids `[batch, tokens]` -> hidden states `[batch, tokens, hidden]` (block-causal)."""

    def __init__(self, config: SpeechDecoderConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.codebook_size, config.hidden_size)
        self.layers = nn.ModuleList([SpeechDecoderLayer(config) for _ in range(config.encoder_layers)])
        self.norm = nn.LayerNorm(config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        cos, sin = rotary_cos_sin(positions, c.hidden_size // c.num_attention_heads, c.rope_theta)
        valid = attention_mask.bool() if attention_mask is not None else None
        mask = block_attention_mask(positions, positions, c.block_size, c.context_blocks, valid)
        x = self.embed_tokens(input_ids)
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
        cond = F.silu(self.time_mlp(_timestep_embedding(t, c.hidden_size)))
        hidden = self.in_proj(x) + mu
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, mask, cond, cache[i] if cache else None)
        return self.out_proj(self.norm(hidden))


# ----------------------------------------------------------------------------------------------------- the model


class SpeechDecoderPreTrainedModel(PreTrainedModel):
    config_class = SpeechDecoderConfig
    base_model_prefix = "speech_decoder"
    main_input_name = "input_ids"
    _no_split_modules = ["SpeechDecoderLayer"]
    _supports_sdpa = True  # the default; `attn_implementation="eager"` takes the explicit softmax path


@dataclass
class _StreamState:
    """What `decode_stream` carries between chunks."""

    tokens: list[int] = field(default_factory=list)
    done: int = 0  # tokens already turned into mel
    caches: list[list[dict]] = field(default_factory=list)  # [euler step][layer] -> {"k", "v"}
    key_start: int = 0  # first frame still held in the caches
    generator: torch.Generator | None = None


class SpeechDecoderModel(SpeechDecoderPreTrainedModel):
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

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def mel_extractor(self) -> LogMelSpectrogram:
        if not hasattr(self, "_mel_extractor"):
            self._mel_extractor = LogMelSpectrogram.from_config(self.config)
        return self._mel_extractor

    def set_vocoder(self, vocoder: nn.Module) -> None:
        """Swap the vocoder: any module mapping log-mel `[batch, n_mels, frames]` -> wave `[batch, frames*hop]`."""
        self.vocoder = vocoder

    def extract_mel(self, waveform, num_tokens: int | None = None) -> torch.Tensor:
        """Training target: log-mel `[frames, n_mels]` of a 1-D waveform at `config.sampling_rate`, cut or padded
        (with silence) to `num_tokens * frames_per_token` frames when `num_tokens` is given."""
        mel = self.mel_extractor(torch.as_tensor(waveform, dtype=torch.float32).reshape(-1)).T
        if num_tokens is not None:
            frames = num_tokens * self.config.frames_per_token
            mel = mel[:frames]
            if mel.shape[0] < frames:
                pad = mel.new_full((frames - mel.shape[0], mel.shape[1]), self.mel_extractor.silence)
                mel = torch.cat([mel, pad])
        return mel

    def normalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.config.mel_mean) / self.config.mel_std

    def denormalize_mel(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.config.mel_std + self.config.mel_mean

    def check_speech_tokenizer(self, tokenizer_config) -> None:
        """Raise if tokens of this tokenizer (a config or model) cannot be decoded by this decoder."""
        tokenizer_config = getattr(tokenizer_config, "config", tokenizer_config)
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
        **kwargs,
    ) -> SpeechDecoderOutput | tuple:
        """Training step. `mel`: target log-mel `[batch, tokens * frames_per_token, n_mels]` (as `extract_mel`)."""
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
        mu = self._condition(self.encoder(input_ids, attention_mask), voice_ids)
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
        grid = _schedule(num_steps, c.t_scheduler, mu.device)
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

    # ----------------------------------------------------------------------------------------------- streaming
    def _stream_mel(self, state: _StreamState, end: int, vid, steps: int, cfg: float) -> torch.Tensor:
        """Mel frames of tokens `state.done .. end` given everything before (caches), `[frames, n_mels]`."""
        c = self.config
        ids = torch.as_tensor(state.tokens[:end], device=self.device)[None]
        hidden = self.encoder(ids)[:, state.done : end]  # block-causal: earlier states are unchanged
        voice_ids = None if vid is None else torch.tensor([vid], device=self.device)
        mu = self._condition(hidden, voice_ids)
        f = c.frames_per_token
        positions = torch.arange(state.done * f, end * f, device=self.device)
        noise = self._noise(state.generator, end - state.done)[None]
        if not state.caches:
            n = 1 if c.objective == "regression" else steps
            state.caches = [[{} for _ in range(c.estimator_layers)] for _ in range(n)]
        mel = self._sample(mu, noise, positions, None, steps, cfg, state.caches, state.key_start)
        state.done = end
        if c.context_blocks and c.block_size:  # drop keys no later frame can attend to
            keep_from = max(0, (end // c.block_size - c.context_blocks) * c.block_size * f)
            if keep_from > state.key_start:
                cut = keep_from - state.key_start
                for layer_caches in state.caches:
                    for cache in layer_caches:
                        cache["k"], cache["v"] = cache["k"][:, :, cut:], cache["v"][:, :, cut:]
                state.key_start = keep_from
        return self.denormalize_mel(mel)[0]

    @torch.no_grad()
    def decode_stream(
        self,
        tokens: Iterable[int | Sequence[int] | torch.Tensor],
        voice: str | int | None = None,
        num_steps: int | None = None,
        cfg_strength: float | None = None,
        seed: int = 0,
        first_chunk_tokens: int | None = None,
        chunk_tokens: Sequence[int] | None = None,
        codebook_size: int | None = None,
        return_mel: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yield 1-D audio chunks while `tokens` arrive (single ids or lists of ids, e.g. from an LM streamer).

        The first chunk is decoded after `first_chunk_tokens` (10 = 0.8 s), later ones after `chunk_tokens`
        more each (25, 50, 100, 150, 200, then 200 again): growing chunks as in the paper's demo. Each chunk is
        decoded with all earlier tokens and mel frames as context (block-causal caches), and the vocoder joins
        it to the previous audio with a short crossfade. Concatenated, the chunks have the offline length.
        With `return_mel=True` the generator yields `(audio, mel_chunk)` pairs (for tests and benchmarks).
        """
        c = self.config
        self._check_ids([0], codebook_size)
        vid = self._voice_id(voice)
        steps = c.num_steps if num_steps is None else num_steps
        cfg = c.cfg_strength if cfg_strength is None else cfg_strength
        sizes = [c.first_chunk_tokens if first_chunk_tokens is None else first_chunk_tokens]
        sizes += list(c.chunk_tokens if chunk_tokens is None else chunk_tokens)
        if c.block_size and any(s % c.block_size for s in sizes):
            raise ValueError(f"chunk sizes {sizes} must be multiples of block_size={c.block_size}")
        state = _StreamState(generator=torch.Generator().manual_seed(seed))
        streamer = StreamingVocoder(
            self.vocoder, c.hop_length, c.vocoder_context_tokens * c.frames_per_token,
            int(round(c.crossfade_ms * c.sampling_rate / 1000)),
        )  # fmt: skip

        def emit(end: int, final: bool):
            mel = self._stream_mel(state, end, vid, steps, cfg)
            audio = streamer.push(mel.T.float(), final=final)
            return (audio, mel) if return_mel else audio

        chunk = 0
        for item in tokens:
            new = [item] if isinstance(item, int) or (isinstance(item, torch.Tensor) and item.dim() == 0) else item
            new = [int(x) for x in (new.tolist() if isinstance(new, torch.Tensor) else new)]
            if new:
                self._check_ids(new, what=f" (stream position {len(state.tokens)})")
            state.tokens.extend(new)
            while len(state.tokens) - state.done >= sizes[min(chunk, len(sizes) - 1)]:
                end = state.done + sizes[min(chunk, len(sizes) - 1)]
                chunk += 1
                yield emit(end, final=False)
        if not state.tokens:
            raise ValueError("empty speech token stream: nothing to decode")
        if len(state.tokens) > state.done:
            yield emit(len(state.tokens), final=True)
        else:
            tail = streamer.flush()
            yield (tail, torch.zeros(0, c.n_mels)) if return_mel else tail


SpeechDecoderConfig.register_for_auto_class()
SpeechDecoderModel.register_for_auto_class("AutoModel")

__all__ = [
    "SpeechDecoderOutput",
    "SpeechDecoderMelOutput",
    "SpeechDecoderPreTrainedModel",
    "SpeechDecoderModel",
    "block_attention_mask",
]

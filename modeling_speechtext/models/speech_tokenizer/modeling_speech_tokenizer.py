"""Supervised speech tokenizer: Whisper encoder layers + average pooling + one VQ codebook + CTC ASR head.

The GLM-4-Voice tokenizer (arXiv 2411.17607) is a Whisper encoder with pooling (kernel 4 -> 12.5 Hz) and a
single VQ layer inserted half way; the layers after the quantizer and an ASR head are only there to make the
codes carry text content. Here the layers are transformers' own `WhisperEncoderLayer` (inherited, not forked);
new are the conv stem's optional causal padding, length-exact masking (no 30 s padding), block-causal
attention for streaming, the EMA quantizer and the CTC head.

Shapes: `input_features` [B, n_mels, T_mel] at 100 Hz -> conv stem [B, T50, D] -> `quantize_position` layers
-> pooling [B, T', D] at 12.5 Hz -> VQ -> fresh positions -> remaining layers -> CTC logits.
`get_output_lengths` is the single place that does the length arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer, sinusoids
from transformers.utils import ModelOutput

from .configuration_speech_tokenizer import SpeechTokenizerConfig

PAD_TOKEN_ID = -1
"""Value of `encode` outputs past each sequence's length: not a code, so misuse fails loudly."""


@dataclass
class SpeechTokenizerOutput(ModelOutput):
    """Output of `SpeechTokenizerModel.forward`.

    Args:
        loss: `ctc_loss + commitment_weight * commitment_loss + aux_ctc_weight * aux_ctc_loss` (with labels).
        ctc_loss, commitment_loss, aux_ctc_loss: the parts (scalars).
        logits: CTC logits `[B, T' * ctc_upsample, asr_vocab_size + 1]` (blank last).
        logit_lengths: valid steps of `logits` per row.
        token_ids: code ids `[B, T']` (`-1` past `token_lengths`; `None` when the quantizer was bypassed).
        token_lengths: valid tokens per row.
        codebook_perplexity: `exp(entropy)` of this batch's code histogram (how many codes are in use).
    """

    loss: torch.FloatTensor | None = None
    ctc_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    aux_ctc_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    logit_lengths: torch.LongTensor | None = None
    token_ids: torch.LongTensor | None = None
    token_lengths: torch.LongTensor | None = None
    codebook_perplexity: torch.FloatTensor | None = None


@dataclass
class SpeechTokenizerQuantizerOutput(ModelOutput):
    """Output of the vector quantizer: straight-through vectors (model width), ids, commitment loss, usage."""

    quantized: torch.FloatTensor | None = None
    token_ids: torch.LongTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table (inverse direction), used to decode byte-level BPE pieces."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


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


class SpeechTokenizerVectorQuantizer(nn.Module):
    """One codebook, nearest neighbour + straight-through, EMA updates, usage-based dead-code restarts.

    The codebook is a buffer (EMA, not gradient, moves it). Distances are computed in float32 even under bf16
    autocast: argmax ties in bf16 would make tokens depend on the batch.
    """

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.config = config
        dim, width = config.resolved_codebook_dim, config.d_model
        self.project_in = nn.Linear(width, dim) if dim != width else nn.Identity()
        self.project_out = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.register_buffer("codebook", torch.empty(config.codebook_size, dim))
        self.register_buffer("ema_count", torch.empty(config.codebook_size))  # EMA usage per code
        self.register_buffer("ema_sum", torch.empty(config.codebook_size, dim))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("input_mean", torch.zeros(width))  # running mean of encoder outputs (centring)

    def _normalize(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) if self.config.use_cosine_codes else z

    def project(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output -> code space (float32, normalised for cosine codes).

        The running mean of the encoder outputs is subtracted first. Without it, the part every frame shares
        (the slowly varying sinusoid channels of the positional embedding, the conv stem's offset) dominates:
        in a test run all projected vectors had cosine 0.999 to each other and the freshly k-means-initialised
        codebook collapsed to one code within a step. In training (`mask` given) the mean is updated first.
        """
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.float()
            if self.config.quantizer_centering_decay is not None:
                if self.training and mask is not None and mask.any():
                    # the batch's own mean in training (the common part can jump in one optimiser step),
                    # the running mean at inference (tokens must not depend on the batch)
                    batch_mean = self._update_input_mean(hidden[mask].mean(0).detach())
                    hidden = hidden - batch_mean
                else:
                    hidden = hidden - self.input_mean
            return self._normalize(self.project_in(hidden))

    @torch.no_grad()
    def _update_input_mean(self, batch_mean: torch.Tensor) -> torch.Tensor:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_mean)
            batch_mean /= torch.distributed.get_world_size()
        self.input_mean.lerp_(batch_mean, 1 - self.config.quantizer_centering_decay)
        return batch_mean

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        codebook = self.codebook.float()
        if self.config.use_cosine_codes:
            return (z @ codebook.T).argmax(-1)
        distances = z.pow(2).sum(-1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(-1)
        return distances.argmin(-1)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Code ids -> model-width vectors (what the layers after the quantizer see)."""
        return self.project_out(F.embedding(token_ids, self.codebook.float()))

    @torch.no_grad()
    def init_codebook(self, hidden: torch.Tensor, kmeans_iters: int = 10, generator=None) -> None:
        """Start the codebook from real encoder outputs (model width, `[N, d_model]`) by a few k-means steps.

        Random init is what collapsed to 1-4 codes in our calibration run; codes born among the data do not.
        The centring mean starts at these outputs' mean.
        """
        if self.config.quantizer_centering_decay is not None:
            self.input_mean.copy_(hidden.float().mean(0))
        vectors = self.project(hidden)
        k = self.config.codebook_size
        pick = torch.randint(len(vectors), (k,), generator=generator) if len(vectors) < k else None
        if pick is None:
            pick = torch.randperm(len(vectors), generator=generator)[:k]
        centroids = vectors[pick].clone()
        for _ in range(kmeans_iters):
            self.codebook.copy_(centroids)
            ids = self.nearest(vectors)
            counts = torch.bincount(ids, minlength=k).float()
            sums = torch.zeros_like(centroids).index_add_(0, ids, vectors)
            used = counts > 0
            centroids[used] = self._normalize(sums[used] / counts[used, None])
        self.codebook.copy_(centroids)
        share = len(vectors) / k
        counts = torch.bincount(self.nearest(vectors), minlength=k).float()
        self.ema_count.copy_(torch.where(counts > 0, counts, torch.full_like(counts, share)))
        self.ema_sum.copy_(centroids * self.ema_count[:, None])

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        cfg = self.config
        counts = torch.bincount(ids, minlength=cfg.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, ids, z)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)  # every rank must keep the same codebook
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(cfg.ema_decay).add_(counts, alpha=1 - cfg.ema_decay)
        self.ema_sum.mul_(cfg.ema_decay).add_(sums, alpha=1 - cfg.ema_decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + cfg.ema_epsilon) / (total + cfg.codebook_size * cfg.ema_epsilon) * total
        self.codebook.copy_(self._normalize(self.ema_sum / smoothed[:, None]))
        self.num_updates += 1
        if cfg.restart_interval > 0 and int(self.num_updates) % cfg.restart_interval == 0:
            self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor) -> int:
        """Codes whose EMA usage fell below `dead_code_threshold` x the uniform share restart at encoder outputs.

        Usage is the EMA count (a long memory), not a short window: rare but healthy codes survive small batches.
        """
        share = self.ema_count.sum() / self.config.codebook_size
        dead = (self.ema_count < self.config.dead_code_threshold * share).nonzero().squeeze(-1)
        if len(dead) == 0 or len(z) == 0:
            return 0
        picks = z[torch.randint(len(z), (len(dead),), device=z.device)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(picks, src=0)
        self.codebook[dead] = picks
        self.ema_count[dead] = share
        self.ema_sum[dead] = picks * share
        return len(dead)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> SpeechTokenizerQuantizerOutput:
        z = self.project(hidden, mask)
        ids = self.nearest(z)
        flat_z, flat_ids = z[mask], ids[mask]
        quantized = F.embedding(ids, self.codebook.float())
        commitment = F.mse_loss(flat_z, quantized[mask].detach()) if len(flat_z) else z.sum() * 0
        if self.training:
            self._ema_update(flat_z.detach(), flat_ids)
        quantized = z + (quantized - z).detach()  # straight-through: gradients flow into the encoder
        probs = torch.bincount(flat_ids, minlength=self.config.codebook_size).float() / max(len(flat_ids), 1)
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
        return SpeechTokenizerQuantizerOutput(
            quantized=self.project_out(quantized).to(hidden.dtype),
            token_ids=ids.masked_fill(~mask, PAD_TOKEN_ID),
            commitment_loss=commitment,
            perplexity=perplexity,
        )


class SpeechTokenizerPreTrainedModel(PreTrainedModel):
    config: SpeechTokenizerConfig
    config_class = SpeechTokenizerConfig
    base_model_prefix = "speech_tokenizer"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["WhisperEncoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False  # block-causal + padding masks are explicit 4D masks
    _supports_flex_attn = False

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SpeechTokenizerSinusoidalPositions):
            init.copy_(module.weight, sinusoids(*module.weight.shape))
        elif isinstance(module, SpeechTokenizerVectorQuantizer):
            init.copy_(module.codebook, module._normalize(torch.randn_like(module.codebook)))
            init.ones_(module.ema_count)
            init.copy_(module.ema_sum, module.codebook)
            init.zeros_(module.num_updates)
            init.zeros_(module.input_mean)

    def get_output_lengths(self, mel_lengths: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Mel frames (100 Hz) -> (50 Hz encoder frames, 12.5 Hz tokens). The only length arithmetic.

        Conv stem: `(T - 1) // 2 + 1` (stride 2, padding 1, kernel 3); pooling keeps a partial last window
        (`ceil`), so no audio is dropped: N samples -> ceil(ceil((N // 160) / 2) / 4) tokens.
        """
        frames = (mel_lengths - 1) // 2 + 1
        tokens = (frames + self.config.pooling_kernel_size - 1) // self.config.pooling_kernel_size
        return frames, tokens

    def _get_feat_extract_output_lengths(self, input_lengths: torch.LongTensor) -> torch.LongTensor:
        """Whisper's name for the conv stem's length arithmetic (50 Hz frames), kept for familiarity."""
        return self.get_output_lengths(input_lengths)[0]


class SpeechTokenizerModel(SpeechTokenizerPreTrainedModel):
    """Speech tokenizer: `encode` (audio features -> code ids), `forward` (training losses), `transcribe_tokens`.

    Example:
    ```python
    >>> from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer, encode_waveforms
    >>> model, feature_extractor = load_speech_tokenizer("runs/demo/speech_tokenizer")
    >>> ids = encode_waveforms(model, feature_extractor, [waveform_16khz])
    >>> model.transcribe_tokens(ids)
    ['mary went to the kitchen']
    ```
    """

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__(config)
        n_pre = config.quantize_position
        self.conv_stem = SpeechTokenizerConvStem(config)
        self.embed_positions = SpeechTokenizerSinusoidalPositions(config.max_source_positions, config.d_model)
        self.layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(n_pre)])
        for index, layer in enumerate(self.layers):
            layer.self_attn.layer_idx = index  # Whisper leaves it unset in the encoder; streaming caches per layer
        self.quantizer = SpeechTokenizerVectorQuantizer(config)
        # A fresh positional embedding after the quantizer, as in the paper: codes carry content, not position.
        max_tokens = -(-config.max_source_positions // config.pooling_kernel_size)
        self.embed_token_positions = SpeechTokenizerSinusoidalPositions(max_tokens, config.d_model)
        self.post_layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(config.encoder_layers - n_pre)])
        self.layer_norm = nn.LayerNorm(config.d_model)
        self.ctc_head = nn.Linear(config.d_model, config.asr_vocab_size + 1)
        if config.aux_ctc_weight > 0:
            self.aux_layer_norm = nn.LayerNorm(config.d_model)
            self.aux_ctc_head = nn.Linear(config.d_model, config.aux_vocab_size + 1)
        self.gradient_checkpointing = False
        self.post_init()
        self.freeze_positional_embeddings()

    def freeze_positional_embeddings(self) -> None:
        """Both position tables are fixed sinusoids (as Whisper's). `from_pretrained` re-creates parameters
        trainable, so the training recipe calls this again after loading a checkpoint."""
        self.embed_positions.requires_grad_(False)
        self.embed_token_positions.requires_grad_(False)

    # ----------------------------------------------------------------- helpers
    @property
    def blank_id(self) -> int:
        return self.config.asr_vocab_size

    def _attention_mask(
        self, valid: torch.Tensor, block: int | None, window: int | None, dtype: torch.dtype, offset: int = 0
    ) -> torch.Tensor | None:
        """[B, 1, T_q, T_k] mask, or None when every key may be seen (the fastest SDPA path).

        Keys must be valid (not padding); with `block`, in the query's block or an earlier one (streaming); with
        `window`, at most `window` frames away. `offset` is the absolute position of the first query (streaming:
        the keys start at 0, the queries at `offset`).
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
        if allowed is None or self.config._attn_implementation != "eager":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=valid.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )

    def _windows(self, post: bool) -> tuple[int | None, int | None]:
        """(block, window) in the frames of the pre- (50 Hz) or post-quantizer (token rate) layers."""
        cfg, k = self.config, self.config.pooling_kernel_size
        block, window = cfg.causal_block_size, cfg.attention_window
        if post:
            block = None if block is None else block // k
            window = None if window is None else max(1, window // k)
        return block, window

    def _run_layers(self, layers, hidden, valid, post: bool):
        mask = self._attention_mask(valid, *self._windows(post), hidden.dtype)
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    def _check_inputs(self, input_features, attention_mask) -> torch.Tensor:
        cfg = self.config
        if not torch.is_tensor(input_features) or input_features.dim() != 3:
            raise ValueError(
                f"input_features must be a tensor [batch, {cfg.num_mel_bins}, frames], got "
                f"{getattr(input_features, 'shape', type(input_features).__name__)}"
            )
        if input_features.shape[1] != cfg.num_mel_bins:
            raise ValueError(
                f"input_features has {input_features.shape[1]} mel bins; this model expects {cfg.num_mel_bins}"
            )
        batch, _, frames = input_features.shape
        if frames < 1 or batch < 1:
            raise ValueError(f"input_features is empty (shape {tuple(input_features.shape)})")
        if not torch.isfinite(input_features).all():
            raise ValueError("input_features contains NaN or inf")
        if attention_mask is None:
            mel_lengths = torch.full((batch,), frames, dtype=torch.long, device=input_features.device)
        else:
            if tuple(attention_mask.shape) != (batch, frames):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected (batch, frames) = {(batch, frames)}"
                )
            mel_lengths = attention_mask.long().sum(-1)
            if (mel_lengths < 1).any():
                raise ValueError("attention_mask marks a row with no valid frame")
        max_frames = self.get_output_lengths(mel_lengths.max())[0]
        if max_frames > cfg.max_source_positions:
            seconds = cfg.max_source_positions / cfg.encoder_frame_rate
            raise ValueError(
                f"input is {int(max_frames)} encoder frames long; this model takes at most {cfg.max_source_positions}"
                f" ({seconds:.0f} s): split the audio (encode_waveforms does)"
            )
        return mel_lengths

    def _pool(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Masked average over windows of `pooling_kernel_size` frames (a partial last window averages its frames)."""
        k = self.config.pooling_kernel_size
        pad = (-hidden.shape[1]) % k
        weights = valid.to(hidden.dtype)[..., None]
        summed = F.pad(hidden * weights, (0, 0, 0, pad)).unflatten(1, (-1, k)).sum(2)
        counts = F.pad(weights, (0, 0, 0, pad)).unflatten(1, (-1, k)).sum(2)
        return summed / counts.clamp_min(1)

    def _encode_pre_quantizer(self, input_features, attention_mask):
        """Conv stem + the layers before the quantizer; returns 50 Hz hidden, pooled 12.5 Hz hidden and masks."""
        mel_lengths = self._check_inputs(input_features, attention_mask)
        frame_lengths, token_lengths = self.get_output_lengths(mel_lengths)
        mel_mask = torch.arange(input_features.shape[-1], device=mel_lengths.device) < mel_lengths[:, None]
        hidden = self.conv_stem(input_features, mel_mask)
        frame_valid = torch.arange(hidden.shape[1], device=hidden.device) < frame_lengths[:, None]
        hidden = hidden + self.embed_positions(hidden.shape[1]).to(hidden.dtype)
        hidden = F.dropout(hidden, p=self.config.dropout, training=self.training)
        hidden = self._run_layers(self.layers, hidden, frame_valid, post=False)
        pooled = self._pool(hidden, frame_valid)
        token_valid = torch.arange(pooled.shape[1], device=pooled.device) < token_lengths[:, None]
        return hidden, frame_valid, pooled, token_valid

    def _decode_post_quantizer(self, quantized: torch.Tensor, token_valid: torch.Tensor):
        """Fresh positions + the layers after the quantizer + CTC head; returns logits and their lengths."""
        cfg = self.config
        if quantized.shape[1] > self.embed_token_positions.num_embeddings:
            raise ValueError(
                f"{quantized.shape[1]} tokens exceed the model's maximum of {self.embed_token_positions.num_embeddings}"
            )
        hidden = quantized + self.embed_token_positions(quantized.shape[1]).to(quantized.dtype)
        hidden = self.layer_norm(self._run_layers(self.post_layers, hidden, token_valid, post=True))
        lengths = token_valid.sum(-1)
        if cfg.ctc_upsample > 1:
            hidden = hidden.repeat_interleave(cfg.ctc_upsample, dim=1)
            lengths = lengths * cfg.ctc_upsample
        return self.ctc_head(hidden), lengths

    def _ctc_loss(self, logits, logit_lengths, labels, vocab_size: int | None = None, name: str = "labels"):
        vocab_size = self.config.asr_vocab_size if vocab_size is None else vocab_size
        if labels.dim() != 2 or labels.shape[0] != logits.shape[0]:
            raise ValueError(f"{name} must be [batch, length] with batch {logits.shape[0]}, got {tuple(labels.shape)}")
        label_mask = labels >= 0
        if (labels[label_mask] >= vocab_size).any():
            head = "asr_vocab_size" if name == "labels" else "the auxiliary vocabulary size"
            raise ValueError(f"{name} contain ids >= {vocab_size} ({head})")
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        return F.ctc_loss(
            log_probs,
            labels[label_mask],
            logit_lengths,
            label_mask.sum(-1),
            blank=vocab_size,
            reduction="mean",
            zero_infinity=True,
        )

    # ----------------------------------------------------------------- public API
    def forward(
        self,
        input_features: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        quantize: bool = True,
        aux_labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> SpeechTokenizerOutput:
        r"""
        Args:
            input_features: log-mel features `[B, num_mel_bins, T]` from `WhisperFeatureExtractor` (any length up
                to `max_source_positions * 2` frames; no 30 s padding needed).
            attention_mask: `[B, T]`, 1 for real frames (right padding).
            labels: ASR targets `[B, L]`, subword ids padded with -100.
            quantize: `False` bypasses the quantizer (the warm-up before codebook init, see the recipe).
            aux_labels: targets of the auxiliary CTC when `config.aux_ctc_units == "chars"` (`speech_tokenizer_data.encode_char_labels`);
                with `"asr"` the auxiliary head reuses `labels`.
        """
        hidden, frame_valid, pooled, token_valid = self._encode_pre_quantizer(input_features, attention_mask)
        token_ids = commitment = perplexity = None
        if quantize:
            q = self.quantizer(pooled, token_valid)
            post_input, token_ids, commitment, perplexity = q.quantized, q.token_ids, q.commitment_loss, q.perplexity
        else:
            post_input = pooled
        logits, logit_lengths = self._decode_post_quantizer(post_input, token_valid)
        loss = ctc = aux = None
        if labels is not None:
            ctc = self._ctc_loss(logits, logit_lengths, labels)
            loss = ctc
            if commitment is not None:
                loss = loss + self.config.commitment_weight * commitment
            if self.config.aux_ctc_weight > 0:
                if self.config.aux_ctc_units == "chars" and aux_labels is None:
                    raise ValueError(
                        'aux_ctc_units="chars" needs aux_labels (speech_tokenizer_data.encode_char_labels)'
                    )
                targets = aux_labels if self.config.aux_ctc_units == "chars" else labels
                aux_logits = self.aux_ctc_head(self.aux_layer_norm(hidden))
                aux = self._ctc_loss(
                    aux_logits, frame_valid.sum(-1), targets, self.config.aux_vocab_size, name="aux_labels"
                )
                loss = loss + self.config.aux_ctc_weight * aux
        return SpeechTokenizerOutput(
            loss=loss,
            ctc_loss=ctc,
            commitment_loss=commitment,
            aux_ctc_loss=aux,
            logits=logits,
            logit_lengths=logit_lengths,
            token_ids=token_ids,
            token_lengths=token_valid.sum(-1),
            codebook_perplexity=perplexity,
        )

    @torch.no_grad()
    def encode(
        self, input_features: torch.FloatTensor, attention_mask: torch.LongTensor | None = None
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Features -> (token ids `[B, T']` padded with -1, lengths `[B]`). Runs only the layers up to the VQ."""
        _, _, pooled, token_valid = self._encode_pre_quantizer(input_features, attention_mask)
        z = self.quantizer.project(pooled)
        ids = self.quantizer.nearest(z).masked_fill(~token_valid, PAD_TOKEN_ID)
        return ids, token_valid.sum(-1)

    @torch.no_grad()
    def load_whisper_encoder_weights(self, whisper_encoder_state: dict[str, torch.Tensor]) -> list[str]:
        """Start from a pretrained Whisper encoder (as the paper starts from whisper-large-v3).

        `whisper_encoder_state` is `WhisperModel.from_pretrained(...).get_encoder().state_dict()`. Its layers
        `0..quantize_position-1` go before the quantizer, the rest after it; conv stem, sinusoid positions and the
        final layer norm map one to one. Returns the names of our parameters it did not cover (quantizer, heads).
        """
        n_pre = self.config.quantize_position
        mapped = {}
        for key, value in whisper_encoder_state.items():
            if key.startswith(("conv1.", "conv2.")):
                mapped["conv_stem." + key] = value
            elif key.startswith("layers."):
                _, index, rest = key.split(".", 2)
                index = int(index)
                mapped[f"layers.{index}.{rest}" if index < n_pre else f"post_layers.{index - n_pre}.{rest}"] = value
            elif key.startswith(("layer_norm.", "embed_positions.")):
                mapped[key] = value
        own = self.state_dict()
        for key, value in mapped.items():
            if key not in own:
                raise ValueError(
                    f"Whisper weight {key!r} has no place in this model (more layers than encoder_layers?)"
                )
            if tuple(own[key].shape) != tuple(value.shape):
                raise ValueError(
                    f"Whisper weight {key!r} has shape {tuple(value.shape)}, ours {tuple(own[key].shape)}"
                )
            own[key].copy_(value)
        return sorted(k for k, p in self.named_parameters() if k not in mapped)

    def streaming_encoder(self) -> SpeechTokenizerStreamingEncoder:
        """A block-by-block encoder (needs `causal_conv` and `causal_block_size`); tokens equal `encode`'s."""
        return SpeechTokenizerStreamingEncoder(self)

    def _padded_ids(self, token_ids: list[list[int]]) -> tuple[torch.LongTensor, torch.Tensor]:
        if isinstance(token_ids, torch.Tensor) or not isinstance(token_ids, (list, tuple)):
            raise ValueError("token_ids must be a list of lists of ints (one list per utterance)")
        rows = [list(map(int, row)) for row in token_ids]
        for i, row in enumerate(rows):
            bad = [t for t in row if not 0 <= t < self.config.codebook_size]
            if bad:
                raise ValueError(f"token_ids[{i}] has ids outside 0..{self.config.codebook_size - 1}: {bad[:5]}")
        longest = max((len(r) for r in rows), default=0)
        ids = torch.zeros(len(rows), max(longest, 1), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        return ids, torch.arange(ids.shape[1], device=self.device) < lengths[:, None]

    @torch.no_grad()
    def ctc_greedy_ids(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best path: argmax per step, merge repeats, drop blanks."""
        best = logits.argmax(-1).tolist()
        out = []
        for row, n in zip(best, lengths.tolist()):
            ids, prev = [], None
            for t in row[:n]:
                if t != prev and t != self.blank_id:
                    ids.append(t)
                prev = t
            out.append(ids)
        return out

    def decode_asr_ids(self, ids: list[int]) -> str:
        """Subword ids -> text with the vocabulary saved in the config (byte-level BPE pieces)."""
        vocab = self.config.asr_vocab
        if vocab is None:
            raise ValueError(
                "this speech tokenizer has no ASR vocabulary (config.asr_vocab); set it with set_asr_vocabulary"
            )
        special = set(self.config.asr_special_ids or [])
        pieces = "".join(vocab[i] for i in ids if i not in special)
        if not self.config.asr_byte_level:
            return pieces.strip()
        table = _bytes_to_unicode()
        data = bytes(table[c] for c in pieces if c in table)
        return data.decode("utf-8", errors="replace").strip()

    @torch.no_grad()
    def transcribe_tokens(self, token_ids: list[list[int]]) -> list[str]:
        """Speech token ids (as from `encode`) -> text, through the layers after the quantizer and the CTC head."""
        if self.config.asr_vocab is None:
            raise ValueError(
                "this speech tokenizer has no ASR vocabulary (config.asr_vocab); set it with set_asr_vocabulary"
            )
        if len(token_ids) == 0:
            return []
        ids, valid = self._padded_ids(token_ids)
        logits, lengths = self._decode_post_quantizer(self.quantizer.embed(ids).to(self.dtype), valid)
        return [self.decode_asr_ids(row) for row in self.ctc_greedy_ids(logits, lengths)]

    @torch.no_grad()
    def transcribe(
        self, input_features: torch.FloatTensor, attention_mask: torch.LongTensor | None = None
    ) -> list[str]:
        """Features -> text through the quantizer (what the tokens say, exactly as `transcribe_tokens`)."""
        ids, lengths = self.encode(input_features, attention_mask)
        return self.transcribe_tokens([row[:n].tolist() for row, n in zip(ids, lengths)])

    def set_asr_vocabulary(self, tokenizer) -> None:
        """Store a (byte-level BPE) tokenizer's pieces in the config so the saved folder transcribes standalone."""
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        if len(pieces) != self.config.asr_vocab_size:
            raise ValueError(f"tokenizer has {len(pieces)} tokens but asr_vocab_size is {self.config.asr_vocab_size}")
        self.config.asr_vocab = [p if p is not None else "" for p in pieces]
        self.config.asr_special_ids = sorted(set(tokenizer.all_special_ids))
        table = _bytes_to_unicode()
        normal = [p for i, p in enumerate(pieces) if i not in set(self.config.asr_special_ids) and p]
        self.config.asr_byte_level = all(c in table for p in normal for c in p)


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

    def __init__(self, model: SpeechTokenizerModel):
        cfg = model.config
        if not cfg.causal_conv or cfg.causal_block_size is None:
            raise ValueError("streaming needs a model with causal_conv=True and causal_block_size set")
        self.model = model
        self.block_mel_frames = 2 * cfg.causal_block_size  # the stem halves the frame rate
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

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
        mask = model._attention_mask(keys, None, model.config.attention_window, hidden.dtype, offset=self.frames_done)
        for layer in model.layers:
            hidden = layer(hidden, mask, cache=self.cache)
        self.frames_done += frames
        valid = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        z = model.quantizer.project(model._pool(hidden, valid))
        return model.quantizer.nearest(z)[0].tolist()


SpeechTokenizerConfig.register_for_auto_class()
SpeechTokenizerModel.register_for_auto_class("AutoModel")

__all__ = [
    "PAD_TOKEN_ID",
    "SpeechTokenizerOutput",
    "SpeechTokenizerQuantizerOutput",
    "SpeechTokenizerConvStem",
    "SpeechTokenizerSinusoidalPositions",
    "SpeechTokenizerVectorQuantizer",
    "SpeechTokenizerPreTrainedModel",
    "SpeechTokenizerModel",
    "SpeechTokenizerStreamingEncoder",
]

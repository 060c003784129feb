"""Supervised speech tokenizer: Whisper encoder layers + average pooling + one VQ codebook + CTC ASR head.

The GLM-4-Voice tokenizer (arXiv 2411.17607) is a Whisper encoder with pooling (kernel 4 -> 12.5 Hz) and a
single VQ layer inserted half way; the layers after the quantizer and an ASR head are only there to make the
codes carry text content. Here the layers are transformers' own `WhisperEncoderLayer` (inherited, not forked);
new are the conv stem's optional causal padding, length-exact masking (no 30 s padding), block-causal
attention for streaming, the EMA quantizer and the CTC head (its decoding, transcription and vocabulary file in
`asr_speech_tokenizer.py`).

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

from .asr_speech_tokenizer import SpeechTokenizerAsrMixin
from .configuration_speech_tokenizer import SpeechTokenizerConfig
from .convert_whisper_to_speech_tokenizer import load_whisper_encoder_weights
from .layers_speech_tokenizer import (
    SpeechTokenizerConvStem,
    SpeechTokenizerSinusoidalPositions,
    attention_windows,
    encoder_attention_mask,
    masked_average_pool,
)
from .quantization_speech_tokenizer import PAD_TOKEN_ID, SpeechTokenizerVectorQuantizer
from .streaming_speech_tokenizer import SpeechTokenizerStreamingEncoder
from .tokenization_speech_tokenizer import SpeechTokenizerAsrVocabulary, legacy_asr_vocabulary


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


class SpeechTokenizerModel(SpeechTokenizerAsrMixin, SpeechTokenizerPreTrainedModel):
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
        # not a config field (151k strings at the paper's size): see tokenization_speech_tokenizer.py
        self.asr_vocabulary: SpeechTokenizerAsrVocabulary | None = legacy_asr_vocabulary(config)
        self.post_init()
        self.freeze_positional_embeddings()

    def freeze_positional_embeddings(self) -> None:
        """Both position tables are fixed sinusoids (as Whisper's). `from_pretrained` re-creates parameters
        trainable, so the training recipe calls this again after loading a checkpoint."""
        self.embed_positions.requires_grad_(False)
        self.embed_token_positions.requires_grad_(False)

    # ----------------------------------------------------------------- helpers
    def _windows(self, post: bool) -> tuple[int | None, int | None]:
        """(block, window) in the frames of the pre- (50 Hz) or post-quantizer (token rate) layers."""
        return attention_windows(self.config, post)

    def _run_layers(self, layers, hidden, valid, post: bool):
        eager = self.config._attn_implementation == "eager"
        mask = encoder_attention_mask(valid, *self._windows(post), hidden.dtype, eager=eager)
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
        pooled = masked_average_pool(hidden, frame_valid, self.config.pooling_kernel_size)
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

    def load_whisper_encoder_weights(self, whisper_encoder_state: dict[str, torch.Tensor]) -> list[str]:
        """Start from a pretrained Whisper encoder (as the paper starts from whisper-large-v3); returns the names of
        our parameters it did not cover. See `convert_whisper_to_speech_tokenizer.load_whisper_encoder_weights`."""
        return load_whisper_encoder_weights(self, whisper_encoder_state)

    def streaming_encoder(self) -> SpeechTokenizerStreamingEncoder:
        """A block-by-block encoder (needs `causal_conv` and `causal_block_size`); tokens equal `encode`'s."""
        return SpeechTokenizerStreamingEncoder(self)


SpeechTokenizerConfig.register_for_auto_class()
SpeechTokenizerModel.register_for_auto_class("AutoModel")

__all__ = [
    "PAD_TOKEN_ID",
    "SpeechTokenizerOutput",
    "SpeechTokenizerPreTrainedModel",
    "SpeechTokenizerModel",
]

"""Configuration of the supervised speech tokenizer (Whisper encoder + pooling + one VQ codebook).

Field names follow `WhisperConfig` (`d_model`, `encoder_layers`, `encoder_attention_heads`, ...) so that
transformers' `WhisperEncoderLayer` can be built straight from this config: we inherit Whisper's layers rather
than fork them. Only the new parts (pooling, quantizer, streaming, ASR head) get new fields.
"""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

LEGACY_ASR_VOCABULARY_KEYS = ("asr_vocab", "asr_special_ids", "asr_byte_level")
"""Keys under which configs saved before `asr_vocab.json` existed carried the ASR vocabulary."""


def fix_auto_map(auto_map: dict) -> dict:
    """One class reference per auto class.

    transformers' `custom_object_save` takes any class whose name contains "Tokenizer" for a text tokenizer and
    writes a (slow, fast) pair, which `AutoModel` / `AutoConfig` then cannot load. Our `SpeechTokenizer*`
    classes are a model, its config and its feature extractor, so the pair is collapsed back to its class.
    """
    return {
        key: next((v for v in value if v), None)
        if isinstance(value, (list, tuple)) and key != "AutoTokenizer"
        else value
        for key, value in auto_map.items()
    }


class SpeechTokenizerConfig(PreTrainedConfig):
    r"""
    Args:
        num_mel_bins (`int`, defaults to 80): log-mel bins of the input (whisper-large-v3 uses 128).
        d_model (`int`, defaults to 256): width of every encoder layer.
        encoder_layers (`int`, defaults to 4): total encoder layers, before *and* after the quantizer.
        encoder_attention_heads (`int`, defaults to 4): attention heads per layer.
        encoder_ffn_dim (`int`, defaults to 1024): feed-forward width.
        max_source_positions (`int`, defaults to 1500): longest input in 50 Hz frames (1500 = 30 s).
        activation_function (`str`, defaults to `"gelu"`), dropout, attention_dropout, activation_dropout
            (`float`, default 0): as in Whisper. Dropout 0 trains ~4x faster on CPU (CALIBRATION.md).
        init_std (`float`, defaults to 0.02): std of the normal init of linear layers.
        sampling_rate (`int`, defaults to 16000), hop_length (`int`, defaults to 160): the feature extractor's
            rate and hop (100 mel frames/s); the conv stem halves that to 50 Hz.
        quantize_position (`int`, defaults to 2): the quantizer sits after this many encoder layers (16 of 32 in
            the paper). Layers after it rebuild context for the ASR head; only layers before it run in `encode`.
        pooling_kernel_size (`int`, defaults to 4): average pooling before the quantizer: 50 Hz / 4 = 12.5 Hz.
        codebook_size (`int`, defaults to 1024): number of speech tokens (16,384 in the paper).
        codebook_dim (`int`, *optional*): code vector size; `None` means `d_model` (the paper: 1280, no
            projection). A small dim (64) with cosine codes resisted collapse in our calibration run.
        use_cosine_codes (`bool`, defaults to `True`): l2-normalise encoder outputs and codes (nearest = largest
            cosine); keeps code norms equal so no code wins by magnitude alone.
        ema_decay (`float`, defaults to 0.99), ema_epsilon (`float`, defaults to 1e-5): EMA codebook updates with
            Laplace-smoothed counts.
        quantizer_centering_decay (`float`, *optional*, defaults to 0.95): the quantizer subtracts a running
            mean (this EMA decay) of the encoder outputs before projecting: the component every frame shares
            otherwise dominates and the codebook collapses. `None` disables it.
        commitment_weight (`float`, defaults to 1.0): weight of `||z - sg(q)||^2` (10 in the GLM-4-Voice report,
            for unnormalised 1280-dim codes).
        dead_code_threshold (`float`, defaults to 0.03): a code is dead when its EMA usage falls below this
            fraction of the uniform share (`total / codebook_size`); dead codes restart from encoder outputs.
        restart_interval (`int`, defaults to 100): training steps between dead-code restarts (paper: ~100).
        causal_conv (`bool`, defaults to `False`): left-padded conv stem, so no frame sees the future.
        causal_block_size (`int`, *optional*): block-causal attention in blocks of this many 50 Hz frames (200 =
            4 s in the paper); must be a multiple of `pooling_kernel_size`. `None` = full attention.
        attention_window (`int`, *optional*): each 50 Hz frame attends only to frames at most this far away
            (`attention_window // pooling_kernel_size` tokens after the quantizer). `None` = full attention (the
            paper). Measured on the demo corpus: 16 (+-320 ms) gave 0.5 nats lower CTC loss after 350 steps than
            full attention, which first has to learn to look locally.
        asr_head (`str`, defaults to `"ctc"`): the supervision head. Only `"ctc"` is implemented: greedy CTC over
            subwords beat an attention decoder at this scale (CALIBRATION.md).
        asr_vocab_size (`int`, defaults to 256): subword vocabulary of the ASR head; the CTC blank is the extra
            id `asr_vocab_size`.
        ctc_upsample (`int`, defaults to 1): repeat each 12.5 Hz step this many times before the CTC head, so
            fast speech still has enough frames for the label sequence.
        aux_ctc_weight (`float`, defaults to 0.0): weight of an auxiliary CTC loss on the 50 Hz pre-quantizer
            frames (gives the lower layers a direct signal); 0 builds no auxiliary head.
        aux_ctc_units (`str`, defaults to `"asr"`): targets of the auxiliary CTC. `"asr"`: the same subwords as
            the main head. `"chars"`: the letters of the scoring-normalised text (`aux_char_vocab`), which 50 Hz
            has frames enough for (about 15 characters/s of speech) and which every word shares, so the lower
            layers learn sounds from every clip instead of one word id at a time.
        aux_char_vocab (`str`, defaults to lowercase letters, digits, apostrophe and space): the character set
            of `aux_ctc_units="chars"`; other characters are dropped from the targets.

    The ASR vocabulary itself (the subword pieces, ~151k strings at the paper's size) is not configuration: it is
    saved next to the weights as `asr_vocab.json` (`tokenization_speech_tokenizer.py`). Configs written before
    carried it as `asr_vocab` / `asr_special_ids` / `asr_byte_level`; those keys are still read (once, into the
    model's vocabulary) and no longer written.
    """

    model_type = "speech_tokenizer"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }

    num_mel_bins: int = 80
    d_model: int = 256
    encoder_layers: int = 4
    encoder_attention_heads: int = 4
    encoder_ffn_dim: int = 1024
    max_source_positions: int = 1500
    activation_function: str = "gelu"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    sampling_rate: int = 16000
    hop_length: int = 160
    quantize_position: int = 2
    pooling_kernel_size: int = 4
    codebook_size: int = 1024
    codebook_dim: int | None = None
    use_cosine_codes: bool = True
    ema_decay: float = 0.99
    ema_epsilon: float = 1e-5
    quantizer_centering_decay: float | None = 0.95
    commitment_weight: float = 1.0
    dead_code_threshold: float = 0.03
    restart_interval: int = 100
    causal_conv: bool = False
    causal_block_size: int | None = None
    attention_window: int | None = None
    asr_head: str = "ctc"
    asr_vocab_size: int = 256
    ctc_upsample: int = 1
    aux_ctc_weight: float = 0.0
    aux_ctc_units: str = "asr"
    aux_char_vocab: str = "abcdefghijklmnopqrstuvwxyz0123456789' "

    def __post_init__(self, **kwargs):
        legacy = {key: kwargs.pop(key) for key in LEGACY_ASR_VOCABULARY_KEYS if key in kwargs}
        super().__post_init__(**kwargs)
        self._legacy_asr_vocabulary = legacy or None
        self._check()

    def _check(self) -> None:
        def fail(field: str, why: str) -> None:
            raise ValueError(f"SpeechTokenizerConfig.{field}={getattr(self, field)!r}: {why}")

        for field in ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim"):
            if getattr(self, field) < 1:
                fail(field, "must be >= 1")
        if self.d_model % self.encoder_attention_heads:
            fail("d_model", f"must be divisible by encoder_attention_heads={self.encoder_attention_heads}")
        if not 0 < self.quantize_position <= self.encoder_layers:
            fail("quantize_position", f"must be in 1..encoder_layers ({self.encoder_layers})")
        if self.pooling_kernel_size < 1:
            fail("pooling_kernel_size", "must be >= 1")
        if self.codebook_size < 2:
            fail("codebook_size", "must be >= 2")
        if self.codebook_dim is not None and self.codebook_dim < 1:
            fail("codebook_dim", "must be >= 1 or None (= d_model)")
        if not 0.0 < self.ema_decay < 1.0:
            fail("ema_decay", "must be in (0, 1)")
        if self.quantizer_centering_decay is not None and not 0.0 <= self.quantizer_centering_decay < 1.0:
            fail("quantizer_centering_decay", "must be in [0, 1) or None")
        if self.max_source_positions < self.pooling_kernel_size:
            fail("max_source_positions", "must hold at least one pooling window")
        if self.causal_block_size is not None and (
            self.causal_block_size < 1 or self.causal_block_size % self.pooling_kernel_size
        ):
            fail("causal_block_size", f"must be a positive multiple of pooling_kernel_size={self.pooling_kernel_size}")
        if self.attention_window is not None and self.attention_window < 1:
            fail("attention_window", "must be >= 1 or None")
        if self.asr_head != "ctc":
            fail("asr_head", 'only "ctc" is implemented (it beat an attention decoder at CPU scale)')
        if self.asr_vocab_size < 1:
            fail("asr_vocab_size", "must be >= 1")
        if self.ctc_upsample < 1:
            fail("ctc_upsample", "must be >= 1")
        if self.aux_ctc_units not in ("asr", "chars"):
            fail("aux_ctc_units", 'must be "asr" or "chars"')
        if self.aux_ctc_units == "chars" and (
            not self.aux_char_vocab or len(set(self.aux_char_vocab)) != len(self.aux_char_vocab)
        ):
            fail("aux_char_vocab", "must be a non-empty string of distinct characters")

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.pop("_legacy_asr_vocabulary", None)  # read from old configs, never written
        if output.get("auto_map"):
            output["auto_map"] = fix_auto_map(output["auto_map"])
        return output

    @property
    def encoder_frame_rate(self) -> float:
        """Frames per second after the stride-2 conv stem (50 Hz for Whisper features)."""
        return self.sampling_rate / self.hop_length / 2

    @property
    def frame_rate(self) -> float:
        """Speech-token frames per second (12.5 Hz by default): the rate of the token stream."""
        return self.encoder_frame_rate / self.pooling_kernel_size

    @property
    def tokens_per_second(self) -> float:
        """One codebook, so one token per frame: equal to `frame_rate`."""
        return self.frame_rate

    @property
    def samples_per_token(self) -> int:
        """Audio samples per token (1,280 = 80 ms at 16 kHz)."""
        return self.hop_length * 2 * self.pooling_kernel_size

    @property
    def bitrate(self) -> float:
        """Bits per second of the token stream: `tokens_per_second * log2(codebook_size)` (175 for the paper)."""
        return self.tokens_per_second * math.log2(self.codebook_size)

    @property
    def aux_vocab_size(self) -> int:
        """Labels of the auxiliary CTC head (its blank is this id)."""
        return len(self.aux_char_vocab) if self.aux_ctc_units == "chars" else self.asr_vocab_size

    @property
    def resolved_codebook_dim(self) -> int:
        return self.codebook_dim or self.d_model


__all__ = ["LEGACY_ASR_VOCABULARY_KEYS", "SpeechTokenizerConfig", "fix_auto_map"]

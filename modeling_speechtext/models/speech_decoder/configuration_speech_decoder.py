"""Configuration of the speech decoder: speech tokens (12.5 Hz) -> log-mel (flow matching) -> waveform."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class SpeechDecoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`SpeechDecoderModel`], the CosyVoice-style decoder of the GLM-4-Voice recipe: token
    embedding -> block-causal transformer token encoder -> length regulation to the mel frame rate ->
    conditional flow matching (block-causal transformer estimator, Euler sampler, optional classifier-free
    guidance) -> vocoder (Griffin-Lim by default).

    Block-causal attention (both in the token encoder and in the estimator) is what makes streaming exact:
    a chunk of tokens that ends on a block border is decoded from the past only, so decoding it as it arrives
    and decoding the whole utterance at once give the same mel.

    Args:
        codebook_size (`int`, *optional*, defaults to 16384):
            Number of speech token ids (the speech tokenizer's codebook size; checked at decode time).
        tokens_per_second (`float`, *optional*, defaults to 12.5):
            Token rate of the speech tokenizer. `sampling_rate / hop_length / tokens_per_second` must be an
            integer (`frames_per_token`): the length regulator repeats each token that many times.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Output audio rate.
        n_fft (`int`, *optional*, defaults to 1024):
            FFT size of the mel analysis (and of the Griffin-Lim vocoder).
        win_length (`int`, *optional*, defaults to 640):
            Analysis window (40 ms at 16 kHz).
        hop_length (`int`, *optional*, defaults to 160):
            Mel hop: 100 frames per second at 16 kHz, 8 frames per 12.5 Hz token.
        n_mels (`int`, *optional*, defaults to 80):
            Mel bins.
        f_min (`float`, *optional*, defaults to 0.0):
            Lowest mel filter frequency.
        f_max (`float`, *optional*, defaults to 8000.0):
            Highest mel filter frequency.
        mel_mean (`float`, *optional*, defaults to -5.0):
            Mean of the log-mel over the training data; the network works on `(log_mel - mel_mean) / mel_std`.
        mel_std (`float`, *optional*, defaults to 2.5):
            Standard deviation of the log-mel over the training data.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the token encoder and of the estimator.
        encoder_layers (`int`, *optional*, defaults to 4):
            Transformer layers of the token encoder (12.5 Hz).
        estimator_layers (`int`, *optional*, defaults to 6):
            Transformer layers of the flow-matching estimator (mel frame rate).
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads in every layer.
        intermediate_size (`int`, *optional*, defaults to 1024):
            Feed-forward width.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout in attention outputs and feed-forward blocks.
        block_size (`int`, *optional*, defaults to 5):
            Attention block in tokens (the estimator uses `block_size * frames_per_token` frames). Every position
            sees its own block and the blocks before it. 0 = full attention (offline quality, streaming becomes
            approximate).
        context_blocks (`int`, *optional*, defaults to 0):
            How many earlier blocks a block may attend to; 0 = all. A bound keeps long streams at constant cost.
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Rotary position base (relative positions: the same network decodes any stream offset).
        objective (`str`, *optional*, defaults to `"flow_matching"`):
            `"flow_matching"` (conditional flow matching, Euler sampler) or `"regression"` (the same network
            predicts the mel in one pass, L1 loss): the ablation baseline at identical size.
        num_steps (`int`, *optional*, defaults to 10):
            Euler steps of the sampler.
        cfg_strength (`float`, *optional*, defaults to 0.7):
            Classifier-free guidance weight at inference: `v = (1 + w) v(mu) - w v(0)`; 0 disables it (half the
            compute).
        cfg_dropout (`float`, *optional*, defaults to 0.2):
            Probability of dropping the token condition during training (what makes guidance possible).
        sigma_min (`float`, *optional*, defaults to 1e-6):
            Minimum noise of the optimal-transport path.
        prior_loss_weight (`float`, *optional*, defaults to 0.0):
            > 0 adds a Grad-TTS-style prior: a linear head predicts a coarse mel from the condition (L1 loss with
            this weight) and the flow starts from `prior + noise` instead of pure noise, so it only has to add
            detail. 0 = CosyVoice's start from N(0, I).
        t_scheduler (`str`, *optional*, defaults to `"cosine"`):
            Time grid of the sampler (and training time distribution): `"cosine"` (`1 - cos(t pi / 2)`, finer
            near the noise end as in CosyVoice) or `"linear"`.
        voice_names (`list[str]`, *optional*, defaults to `[]`):
            Voices with a learned embedding. Empty = a single voice (the paper's setting: the decoder defines
            the output voice).
        default_voice (`str`, *optional*):
            Voice used when `decode` is not told one (the target voice).
        vocoder_type (`str`, *optional*, defaults to `"griffin_lim"`):
            Registered vocoder (`vocoder.VOCODERS`); `SpeechDecoderModel.set_vocoder` swaps
            in any other (e.g. a neural one).
        griffin_lim_iters (`int`, *optional*, defaults to 32):
            Griffin-Lim iterations.
        griffin_lim_momentum (`float`, *optional*, defaults to 0.99):
            Fast Griffin-Lim momentum.
        first_chunk_tokens (`int`, *optional*, defaults to 10):
            Tokens before the first streamed audio (10 tokens = 0.8 s, as in the paper).
        chunk_tokens (`list[int]`, *optional*, defaults to `[25, 50, 100, 150, 200]`):
            Sizes of the following chunks (the last one repeats): larger chunks later, when the listener already
            has audio to play, cost less overhead per token.
        crossfade_ms (`float`, *optional*, defaults to 20.0):
            Crossfade between consecutive streamed chunks (the vocoder re-synthesises the overlap with the
            previous audio as phase context, so a short fade suffices).
        vocoder_context_tokens (`int`, *optional*, defaults to 2):
            Earlier mel given to the vocoder with each new chunk.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the weight initialisation.
        condition (`str`, *optional*, defaults to `"tokens"`):
            What the token encoder starts from: `"tokens"` (a learned embedding of each id), `"tokenizer_states"`
            (a frozen copy of the speech tokenizer's post-quantizer layers run on the ids: the states its ASR head
            reads words from; `tokenizer_states_speech_decoder.py`) or `"both"` (their sum).
        tokenizer_config (`dict`, *optional*):
            The speech tokenizer's config (`SpeechTokenizerConfig.to_dict()`), needed by the tokenizer-state
            conditions to build the copy; its codebook must match `codebook_size`.
        tokenizer_states_block_causal (`bool`, *optional*, defaults to `True`):
            The copied layers see the decoder's current and earlier blocks only, so streaming stays exact; False
            keeps the tokenizer's own (look-ahead) mask: offline quality, approximate streaming.

    Example:
    ```python
    >>> from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    >>> from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
    >>> model = SpeechDecoderModel(SpeechDecoderConfig(codebook_size=512, hidden_size=64))
    >>> audio = model.decode([1, 2, 3, 4, 5])  # 5 tokens -> 0.4 s at 16 kHz
    ```"""

    model_type = "speechtext_speech_decoder"

    codebook_size: int = 16384
    tokens_per_second: float = 12.5
    sampling_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_mean: float = -5.0
    mel_std: float = 2.5
    hidden_size: int = 256
    encoder_layers: int = 4
    estimator_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    dropout: float = 0.0
    block_size: int = 5
    context_blocks: int = 0
    rope_theta: float = 10000.0
    objective: str = "flow_matching"
    num_steps: int = 10
    cfg_strength: float = 0.7
    cfg_dropout: float = 0.2
    sigma_min: float = 1e-6
    prior_loss_weight: float = 0.0
    t_scheduler: str = "cosine"
    voice_names: list[str] | None = None
    default_voice: str | None = None
    vocoder_type: str = "griffin_lim"
    griffin_lim_iters: int = 32
    griffin_lim_momentum: float = 0.99
    first_chunk_tokens: int = 10
    chunk_tokens: list[int] | None = None
    crossfade_ms: float = 20.0
    vocoder_context_tokens: int = 2
    initializer_range: float = 0.02
    condition: str = "tokens"
    tokenizer_config: dict | None = None
    tokenizer_states_block_causal: bool = True

    def __post_init__(self, **kwargs):
        if self.voice_names is None:
            self.voice_names = []
        if self.chunk_tokens is None:
            self.chunk_tokens = [25, 50, 100, 150, 200]
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: fail at construction, not deep inside a forward pass."""
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must split into num_attention_heads ({self.num_attention_heads})"
                " heads of even size (rotary embeddings)"
            )
        frames = self.sampling_rate / self.hop_length / self.tokens_per_second
        if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
            raise ValueError(
                f"sampling_rate / hop_length / tokens_per_second = {self.sampling_rate} / {self.hop_length} / "
                f"{self.tokens_per_second} = {frames:g} mel frames per token; it must be a positive integer"
            )
        if self.objective not in ("flow_matching", "regression"):
            raise ValueError(f"objective must be 'flow_matching' or 'regression', got {self.objective!r}")
        if self.t_scheduler not in ("cosine", "linear"):
            raise ValueError(f"t_scheduler must be 'cosine' or 'linear', got {self.t_scheduler!r}")
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {self.codebook_size}")
        if self.condition not in ("tokens", "tokenizer_states", "both"):
            raise ValueError(f"condition must be 'tokens', 'tokenizer_states' or 'both', got {self.condition!r}")
        if self.condition != "tokens":
            if not self.tokenizer_config:
                raise ValueError(f"condition={self.condition!r} needs tokenizer_config (the speech tokenizer's config)")
            size = self.tokenizer_config.get("codebook_size")
            if size != self.codebook_size:
                raise ValueError(f"tokenizer_config has codebook_size={size}, but this decoder's codebook_size is "
                                 f"{self.codebook_size}")  # fmt: skip
        if self.default_voice is not None and self.default_voice not in self.voice_names:
            raise ValueError(f"default_voice {self.default_voice!r} is not one of voice_names {self.voice_names}")
        sizes = [self.first_chunk_tokens, *self.chunk_tokens]
        if min(sizes) < 1:
            raise ValueError(f"streaming chunk sizes must be >= 1 token, got {sizes}")
        if self.block_size and any(s % self.block_size for s in sizes):
            raise ValueError(
                f"streaming chunk sizes {sizes} must be multiples of block_size ({self.block_size}) so that streamed "
                "and offline decoding agree"
            )

    @property
    def frames_per_token(self) -> int:
        """Mel frames per speech token (8 at 16 kHz, hop 160, 12.5 Hz)."""
        return round(self.sampling_rate / self.hop_length / self.tokens_per_second)

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sampling_rate / self.hop_length

    @property
    def samples_per_token(self) -> int:
        return self.frames_per_token * self.hop_length

    @property
    def num_voices(self) -> int:
        return len(self.voice_names)


__all__ = ["SpeechDecoderConfig"]

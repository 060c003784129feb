"""Configuration of the speech-text model: the speech tokenizer and the LM as sub-configs, plus where the speech
tokens sit in the LM's vocabulary and how an assistant turn alternates text and speech.

The LM's own config (`text_config`) stays a stock one (llama, qwen2, ...): the LM inside loads alone with
`AutoModelForCausalLM` and can be served by any LLM server; everything speech-specific lives here.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_speech_tokenizer import SpeechTokenizerConfig
from .layout_speech_text import StreamingThoughtsLayout


class SpeechTextConfig(PreTrainedConfig):
    r"""
    Args:
        speech_tokenizer_config (`SpeechTokenizerConfig` or dict): the speech tokenizer (encoder + VQ + ASR head).
        text_config (`PreTrainedConfig` or dict): the causal LM, any architecture `AutoModelForCausalLM` knows.
        audio_offset (`int`): token id of `<|audio_0|>` in the LM's vocabulary.
        codebook_size (`int`): number of speech tokens; must equal the speech tokenizer's codebook.
        begin_of_audio_id / end_of_audio_id (`int`): the markers around every speech span.
        eos_token_id (`int`): ends an assistant turn.
        pad_token_id (`int`, *optional*): padding of batched prompts (eos when unset).
        system_token_id / user_token_id / assistant_token_id (`int`, *optional*): the chat role markers; never
            generated inside a turn.
        text_chunk / speech_chunk (`int`, defaults to 13 / 26): the streaming-thoughts layout (PAPER.md §7).
    """

    model_type = "speech_text"
    sub_configs_defaults = {
        "speech_tokenizer_config": SpeechTokenizerConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    speech_tokenizer_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    audio_offset: int | None = None
    codebook_size: int | None = None
    begin_of_audio_id: int | None = None
    end_of_audio_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    system_token_id: int | None = None
    user_token_id: int | None = None
    assistant_token_id: int | None = None
    text_chunk: int = 13
    speech_chunk: int = 26
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        if self.audio_offset is not None:  # a bare `SpeechTextConfig()` (AutoConfig's default) is allowed
            self._check()

    def _check(self) -> None:
        for field in ("codebook_size", "begin_of_audio_id", "end_of_audio_id", "eos_token_id"):
            if getattr(self, field) is None:
                raise ValueError(f"SpeechTextConfig.{field} is required once audio_offset is set")
        if self.codebook_size != self.speech_tokenizer_config.codebook_size:
            raise ValueError(
                f"SpeechTextConfig: the LM has {self.codebook_size} speech tokens but the speech tokenizer's "
                f"codebook has {self.speech_tokenizer_config.codebook_size}: they were not trained together"
            )
        vocab = getattr(self.text_config, "vocab_size", None)
        if vocab is not None and self.audio_offset + self.codebook_size > vocab:
            raise ValueError(
                f"SpeechTextConfig: speech tokens {self.audio_offset}..{self.audio_offset + self.codebook_size - 1} "
                f"lie outside the LM's vocabulary of {vocab}"
            )
        self.layout  # validates chunk sizes and markers  # noqa: B018

    @property
    def layout(self) -> StreamingThoughtsLayout:
        return StreamingThoughtsLayout(
            self.audio_offset, self.codebook_size, self.begin_of_audio_id, self.end_of_audio_id,
            self.eos_token_id, self.text_chunk, self.speech_chunk,
        )  # fmt: skip

    @property
    def role_token_ids(self) -> list[int]:
        return [t for t in (self.system_token_id, self.user_token_id, self.assistant_token_id) if t is not None]


__all__ = ["SpeechTextConfig"]

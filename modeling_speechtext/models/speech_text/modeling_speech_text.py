"""`SpeechTextForConditionalGeneration`: speech in, text and speech tokens out, in one `generate` call.

The model holds the speech tokenizer (its encoder and VQ turn audio into discrete tokens; its ASR head reads
speech tokens back as text) and a *stock* causal LM whose vocabulary holds the speech tokens. Speech enters the LM
as token ids, not embeddings, so there is no projector: `generate(input_ids=..., input_features=...)` encodes each
clip, writes its tokens into the prompt where the processor left an empty `<|begin_of_audio|><|end_of_audio|>`
placeholder (as Qwen2-Audio expands its audio placeholder, but with ids), and runs the LM's own `generate` under
`StreamingThoughtsLogitsProcessor`, so the answer always parses as text + speech.

`language_model` saves and loads alone (`AutoModelForCausalLM`), which is what LLM servers can serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, LogitsProcessorList, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_speech_text import SpeechTextConfig
from .logits_process_speech_text import StreamingThoughtsLogitsProcessor
from .modeling_speech_tokenizer import SpeechTokenizerModel

ROLE_TOKENS = {"system_token_id": "<|system|>", "user_token_id": "<|user|>", "assistant_token_id": "<|assistant|>"}


@dataclass
class SpeechTextGenerateOutput(ModelOutput):
    """What `generate` returns.

    Args:
        sequences: `[B, prompt_length + new]` LM ids: the left-padded prompts with speech written in, then the turns.
        prompt_length: where the generated turns start in `sequences`.
        text_ids: per row, the text token ids of the turn (layout markers and speech dropped).
        speech_ids: per row, the speech ids of the turn, `0..codebook_size-1` (what the speech decoder takes).
    """

    sequences: torch.LongTensor | None = None
    prompt_length: int | None = None
    text_ids: list[list[int]] | None = None
    speech_ids: list[list[int]] | None = None


class SpeechTextPreTrainedModel(PreTrainedModel):
    config_class = SpeechTextConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True


class SpeechTextForConditionalGeneration(SpeechTextPreTrainedModel):
    def __init__(self, config: SpeechTextConfig):
        super().__init__(config)
        self.speech_tokenizer = SpeechTokenizerModel(config.speech_tokenizer_config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    # ------------------------------------------------------------------------------------------------ assembly
    @classmethod
    def from_parts(cls, speech_tokenizer: SpeechTokenizerModel, language_model, tokenizer, **layout):
        """One model from a trained speech tokenizer, a speech-text LM and the LM's tokenizer (which gives the ids
        of the speech tokens, markers and roles). `layout`: `text_chunk` / `speech_chunk` (else the LM config's
        `speech_text` entry, written by the SFT recipe, else 13 / 26)."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in ("<|audio_0|>", "<|begin_of_audio|>", "<|end_of_audio|>") if t not in vocab]
        if missing:
            raise ValueError(f"the LM's tokenizer has no speech vocabulary (missing {missing}): not a speech-text LM")
        offset = vocab["<|audio_0|>"]
        size = 0
        while f"<|audio_{size}|>" in vocab:
            if vocab[f"<|audio_{size}|>"] != offset + size:
                raise ValueError(f"speech tokens are not contiguous in the LM's vocabulary (at <|audio_{size}|>)")
            size += 1
        saved = dict(getattr(language_model.config, "speech_text", None) or {})
        eos = tokenizer.eos_token_id
        config = SpeechTextConfig(
            speech_tokenizer_config=speech_tokenizer.config.to_dict(),
            text_config=language_model.config.to_dict(),
            audio_offset=offset, codebook_size=size,
            begin_of_audio_id=vocab["<|begin_of_audio|>"], end_of_audio_id=vocab["<|end_of_audio|>"],
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
            text_chunk=layout.get("text_chunk", saved.get("text_chunk", 13)),
            speech_chunk=layout.get("speech_chunk", saved.get("speech_chunk", 26)),
            **{field: vocab.get(token) for field, token in ROLE_TOKENS.items()},
        )  # fmt: skip
        with torch.device("meta"):  # the parts replace both halves: build nothing twice
            model = cls(config)
        model.speech_tokenizer = speech_tokenizer
        model.language_model = language_model
        return model.to(language_model.device).eval()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def forward(self, input_ids=None, attention_mask=None, input_features=None, feature_attention_mask=None,
                **kwargs):  # fmt: skip
        """The LM's forward (loss with `labels`, logits); `input_features` are first written into `input_ids`."""
        if input_features is not None:
            if any(kwargs.get(k) is not None for k in ("labels", "position_ids", "past_key_values")):
                raise ValueError("labels / position_ids / a cache refer to positions of input_ids, which writing the "
                                 "speech in changes: call splice_speech first and pass its ids")  # fmt: skip
            input_ids, attention_mask = self.splice_speech(input_ids, attention_mask, input_features,
                                                           feature_attention_mask)  # fmt: skip
        return self.language_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    # ------------------------------------------------------------------------------------------------ prompts
    @torch.no_grad()
    def encode_speech(self, input_features, feature_attention_mask=None) -> list[list[int]]:
        """Features -> LM ids of each clip's speech tokens (offset into the LM vocabulary)."""
        st = self.speech_tokenizer
        if feature_attention_mask is not None:
            feature_attention_mask = feature_attention_mask.to(st.device)
        ids, lengths = st.encode(input_features.to(st.device, st.dtype), feature_attention_mask)
        out = [(row[:n] + self.config.audio_offset).tolist() for row, n in zip(ids, lengths.tolist())]
        if any(not o for o in out):
            raise ValueError("a clip is too short to give a single speech token (80 ms at 12.5 Hz)")
        return out

    def default_prompt(self, n: int = 1) -> torch.LongTensor:
        """`<|user|><|begin_of_audio|><|end_of_audio|><|assistant|>` per row: one spoken question, no history."""
        c = self.config
        if c.user_token_id is None or c.assistant_token_id is None:
            raise ValueError("the config has no <|user|> / <|assistant|> ids: pass input_ids built by the processor")
        row = [c.user_token_id, c.begin_of_audio_id, c.end_of_audio_id, c.assistant_token_id]
        return torch.tensor([row] * n)

    def splice_speech(self, input_ids, attention_mask, input_features, feature_attention_mask=None):
        """Write each clip's speech tokens into the next empty `<boa><eoa>` placeholder (row by row, left to
        right), and return left-padded `(input_ids, attention_mask)`."""
        c = self.config
        speech = self.encode_speech(input_features, feature_attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        rows, k = [], 0
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            ids = [t for t, m in zip(ids, mask) if m]
            out = []
            for i, t in enumerate(ids):
                out.append(t)
                if t == c.begin_of_audio_id and i + 1 < len(ids) and ids[i + 1] == c.end_of_audio_id:
                    if k == len(speech):
                        raise ValueError(
                            f"the prompts hold more audio placeholders than the {len(speech)} clips given"
                        )
                    out += speech[k]
                    k += 1
            rows.append(out)
        if k != len(speech):
            raise ValueError(f"{len(speech)} clips given but the prompts hold {k} audio placeholders")
        return self._left_pad(rows)

    def _left_pad(self, rows: Sequence[list[int]]):
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else self.config.eos_token_id
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids.to(self.language_model.device), mask.to(self.language_model.device)

    # ------------------------------------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, input_features=None, feature_attention_mask=None,
                 mode: str = "interleaved", logits_processor=None, sample_text: bool = False,
                 **kwargs) -> SpeechTextGenerateOutput:  # fmt: skip
        """Answer each prompt with one assistant turn in the layout (`mode`: interleaved, text or speech).

        `input_ids` without speech: text prompts as they are. With `input_features` (and no `input_ids`): one
        spoken question per clip with the default prompt. Other kwargs go to the LM's `generate` (`max_new_tokens`,
        `do_sample`, `streamer`, ...). With `do_sample=True` (one beam) the speech is sampled and the text stays
        greedy unless `sample_text=True` (greedy speech loops and never ends its last chunk: see the logits
        processor).
        Prompts longer than the LM's positions are refused before generating.
        """
        c = self.config
        if input_features is not None:
            if input_ids is None:
                input_ids = self.default_prompt(input_features.shape[0])
            input_ids, attention_mask = self.splice_speech(input_ids, attention_mask, input_features,
                                                           feature_attention_mask)  # fmt: skip
        elif input_ids is None:
            raise ValueError("generate needs input_ids, input_features or both")
        else:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            rows = [[t for t, m in zip(r, mk) if m] for r, mk in zip(input_ids.tolist(), attention_mask.tolist())]
            input_ids, attention_mask = self._left_pad(rows)
        width = input_ids.shape[1]
        limit = getattr(c.text_config, "max_position_embeddings", None)
        if kwargs.get("max_length") is not None and kwargs.get("max_new_tokens") is None:
            total = int(kwargs["max_length"])
        else:
            total = width + int(
                kwargs.get("max_new_tokens") or self.language_model.generation_config.max_new_tokens or 0
            )
        if limit is not None and total > limit:
            raise ValueError(f"the prompt ({width} tokens) plus the new tokens ({total - width}) exceeds the LM's "
                             f"{limit} positions: shorten the question or the history")  # fmt: skip
        pad = c.pad_token_id if c.pad_token_id is not None else c.eos_token_id
        suppress = list(c.role_token_ids) + ([pad] if pad != c.eos_token_id else [])
        config = kwargs.get("generation_config") or self.language_model.generation_config
        sampling = bool(kwargs.get("do_sample", config.do_sample))
        if sampling and int(kwargs.get("num_beams", config.num_beams) or 1) > 1:
            raise ValueError("beam sampling cannot keep the streaming-thoughts layout: it draws 2 x num_beams "
                             "candidates where a slot may allow one token (<boa>, <eoa>, eos); sample with "
                             "num_beams=1, or use beams with do_sample=False")  # fmt: skip
        greedy_text = sampling and not sample_text
        processors = LogitsProcessorList(
            [StreamingThoughtsLogitsProcessor(c.layout, width, mode, suppress, greedy_text)]
        )
        processors.extend(logits_processor or [])
        sequences = self.language_model.generate(
            input_ids=input_ids, attention_mask=attention_mask, logits_processor=processors,
            eos_token_id=c.eos_token_id, pad_token_id=pad, **kwargs,
        )  # fmt: skip
        if not isinstance(sequences, torch.Tensor):  # return_dict_in_generate=True
            sequences = sequences.sequences
        turns = [row[width:].tolist() for row in sequences]
        turns = [t[: t.index(c.eos_token_id)] if c.eos_token_id in t else t for t in turns]  # pads after eos
        parsed = [c.layout.parse(t) for t in turns]
        return SpeechTextGenerateOutput(sequences=sequences, prompt_length=width,
                                        text_ids=[t for t, _ in parsed], speech_ids=[s for _, s in parsed])  # fmt: skip

    def transcribe_speech(self, speech_ids: Sequence[Sequence[int]]) -> list[str]:
        """Speech ids (0..K-1) -> text through the speech tokenizer's ASR head (how S->S is scored)."""
        return self.speech_tokenizer.transcribe_tokens([list(s) for s in speech_ids])

    # ------------------------------------------------------------------------------------------------ files
    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` + the speech tokenizer's `asr_vocab.json` (its ASR head's strings)."""
        self.speech_tokenizer.save_asr_vocabulary(save_directory, kwargs.get("is_main_process", True))
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.speech_tokenizer.load_asr_vocabulary(pretrained_model_name_or_path, **kwargs)
        return loaded


SpeechTextConfig.register_for_auto_class()
SpeechTextForConditionalGeneration.register_for_auto_class("AutoModel")

__all__ = ["SpeechTextForConditionalGeneration", "SpeechTextGenerateOutput", "SpeechTextPreTrainedModel"]

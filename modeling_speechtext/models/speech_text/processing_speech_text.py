"""`SpeechTextProcessor`: audio and chat messages in, model inputs out; generated ids back to text and speech.

A `ProcessorMixin` of the speech tokenizer's feature extractor and the LM's text tokenizer (whose chat template
types every part of a message). A spoken part of a message becomes an empty `<|begin_of_audio|><|end_of_audio|>`
pair in the prompt plus its log-mel features; the model fills the pair with the clip's speech tokens
(`SpeechTextForConditionalGeneration.splice_speech`), since only the model's encoder knows them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from transformers import BatchFeature, ProcessorMixin

BEGIN, END, AUDIO = "<|begin_of_audio|>", "<|end_of_audio|>", "<|audio_{}|>"
PLACEHOLDER = BEGIN + END
_AUDIO_RE = re.compile(r"<\|audio_(\d+)\|>")


class SpeechTextProcessor(ProcessorMixin):
    r"""Feature extractor (log-mel at each clip's length) + text tokenizer (text, speech tokens, roles, template).

    Messages follow transformers' typed-content convention: `content` is a string or a list of parts, each
    `{"type": "text", "text": ...}`, `{"type": "audio", "audio": 1-D float array at 16 kHz}` or
    `{"type": "speech", "speech_ids": [...]}` (speech already as token ids 0..K-1, e.g. an earlier answer).
    """

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template, **kwargs)

    # ---------------------------------------------------------------- speech ids <-> token strings
    @staticmethod
    def speech_to_text(speech_ids: Sequence[int]) -> str:
        """Speech ids -> one `<|begin_of_audio|><|audio_i|>...<|end_of_audio|>` block."""
        if len(speech_ids) == 0:
            raise ValueError("a speech part with no speech tokens")
        return BEGIN + "".join(AUDIO.format(int(s)) for s in speech_ids) + END

    @staticmethod
    def text_to_speech_ids(text: str) -> list[int]:
        """Every `<|audio_i|>` of a string, as ids i (the inverse of `speech_to_text`)."""
        return [int(m) for m in _AUDIO_RE.findall(text)]

    # ---------------------------------------------------------------- inputs
    def _features(self, audio: list, sampling_rate: int) -> dict:
        for i, clip in enumerate(audio):
            clip = np.asarray(clip)
            if clip.ndim != 1 or clip.size == 0 or not np.issubdtype(clip.dtype, np.floating):
                raise ValueError(f"audio {i}: expected a non-empty 1-D float waveform, got shape {clip.shape} "
                                 f"dtype {clip.dtype}")  # fmt: skip
            if not np.isfinite(clip).all():
                raise ValueError(f"audio {i}: the waveform holds NaN or inf")
        feats = self.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in audio], sampling_rate=sampling_rate, return_tensors="pt",
            return_attention_mask=True,
        )  # fmt: skip
        return {"input_features": feats["input_features"], "feature_attention_mask": feats["attention_mask"]}

    def __call__(self, text=None, audio=None, sampling_rate: int = 16000, **kwargs) -> BatchFeature:
        """Rendered prompt(s) with one placeholder per clip, and the clips: `input_ids`, `attention_mask`,
        `input_features`, `feature_attention_mask` (batched prompts are left-padded, as decoder-only generation
        wants)."""
        if text is None:
            raise ValueError("SpeechTextProcessor needs the prompt text (use apply_chat_template for messages)")
        text = [text] if isinstance(text, str) else list(text)
        audio = (
            [] if audio is None else ([audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio))
        )
        holes = sum(t.count(PLACEHOLDER) for t in text)
        if holes != len(audio):
            raise ValueError(f"{len(audio)} audio clips for {holes} {PLACEHOLDER} placeholders in the prompts")
        enc = self.tokenizer(text, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
        data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if audio:
            data.update(self._features(audio, sampling_rate))
        return BatchFeature(data=data)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> tuple[str, list]:
        """One conversation -> (prompt string with placeholders, its audio clips in order)."""
        clips, out = [], []
        for m in messages:
            content = m.get("content")
            if isinstance(content, str):
                out.append(m)
                continue
            parts = []
            for part in content or []:
                kind = part.get("type")
                if kind == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "audio":
                    clips.append(part["audio"])
                    parts.append({"type": "speech", "text": PLACEHOLDER})
                elif kind == "speech":
                    parts.append({"type": "speech", "text": self.speech_to_text(part["speech_ids"])})
                else:
                    raise ValueError(f"unknown message part type {kind!r}: expected text, audio or speech")
            if not parts:
                raise ValueError(f"a {m.get('role')} message with no content")
            out.append({"role": m["role"], "content": parts})
        rendered = self.tokenizer.apply_chat_template(out, add_generation_prompt=add_generation_prompt, tokenize=False)
        return rendered, clips

    def apply_chat_template(self, conversation, add_generation_prompt: bool = True, tokenize: bool = True,
                            return_dict: bool = True, sampling_rate: int = 16000, **kwargs):  # fmt: skip
        """Messages (one conversation or a batch) -> model inputs, as transformers' processors do.

        Written here rather than inherited: the base implementation loads audio from paths/URLs and expands a
        placeholder into feature-length tokens; here a clip is kept as an array and becomes one empty marker pair
        that the model fills with discrete speech tokens.
        """
        batch = conversation if conversation and isinstance(conversation[0], list) else [conversation]
        rendered, clips = zip(*(self.render(c, add_generation_prompt) for c in batch))
        if not tokenize:
            return list(rendered) if batch is conversation else rendered[0]
        inputs = self(list(rendered), audio=[c for cs in clips for c in cs], sampling_rate=sampling_rate)
        return inputs if return_dict else inputs["input_ids"]

    # ---------------------------------------------------------------- outputs
    def decode_turn(self, text_ids: Sequence[int]) -> str:
        """A turn's text ids -> its text (special tokens dropped)."""
        return self.tokenizer.decode(list(text_ids), skip_special_tokens=True).strip()

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "input_features", "feature_attention_mask"]


SpeechTextProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["SpeechTextProcessor"]

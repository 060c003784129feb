"""A transformers pipeline for the spoken chat: `pipeline("speech-text-chat", model=..., processor=..., decoder=...)`.

A thin `Pipeline` over `SpeechTextChat.reply` (the engine keeps the one implementation of prompts, history, the
input checks and decoding), so that the chat can be used where code expects a transformers pipeline: batched
calls over a list or a dataset (one at a time), `device=`, the registry. For streamed text and audio use `SpeechTextChat.stream`.

    from transformers import pipeline
    import modeling_speechtext.generation.chat_pipeline  # registers the task

    chat = pipeline("speech-text-chat", model=model, processor=processor, decoder=decoder)
    out = chat({"audio": wave, "sampling_rate": 16000})   # or chat("Mary went to the kitchen. Where is Mary?")
    out["text"], out["audio"], out["history"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from modeling_speechtext.constants import SAMPLE_RATE
from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

TASK = "speech-text-chat"


def _is_file(text: str) -> bool:
    """Whether a string input names an existing file (a long typed question is not a path: no OSError)."""
    try:
        return len(text) < 1024 and Path(text).is_file()
    except OSError:
        return False


class SpeechTextChatPipeline(Pipeline):
    """Inputs: a string (typed question; an existing file's path is audio), a 1-D waveform at 16 kHz, a `Path`, a
    dict `{"audio": wave or path, "sampling_rate": sr}`, a `datasets` Audio row (`{"array", "sampling_rate"}`, or
    `{"audio": {...}}`) or `{"text": ...}`. One question per call (a list gives one answer per item). Call kwargs: `history` (messages from an
    earlier output), `mode` (interleaved, text, speech) and generate kwargs (`max_new_tokens`, ...).
    Output: `{"text", "audio", "sampling_rate", "speech_ids", "history", "refused", "truncated"}`."""

    def __init__(self, *args, decoder=None, chat_kwargs: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if decoder is None:
            raise ValueError("speech-text-chat needs decoder= (a SpeechDecoderModel trained on the same tokenizer)")
        if self.processor is None:
            raise ValueError("speech-text-chat needs processor= (the model's SpeechTextProcessor)")
        self.chat = SpeechTextChat(self.model, self.processor, decoder.to(self.model.device), **(chat_kwargs or {}))

    def _sanitize_parameters(self, history=None, mode=None, **generate_kwargs):
        forward = dict(generate_kwargs)
        if history is not None:
            forward["history"] = history
        if mode is not None:
            forward["mode"] = mode
        return {}, forward, {}

    def preprocess(self, inputs) -> dict[str, Any]:
        if isinstance(inputs, Path) or (isinstance(inputs, str) and _is_file(inputs)):
            return {"audio": str(inputs), "sampling_rate": SAMPLE_RATE}
        if isinstance(inputs, str):
            return {"text": inputs}
        if isinstance(inputs, dict):
            if "text" in inputs:
                return {"text": inputs["text"]}
            audio = inputs.get("audio", inputs.get("array"))  # ours, or a `datasets` Audio row
            if isinstance(audio, dict):
                audio, rate = audio.get("array"), audio.get("sampling_rate", SAMPLE_RATE)
            else:
                rate = inputs.get("sampling_rate", SAMPLE_RATE)
            if audio is None:
                raise ValueError('a dict input needs "audio" (and "sampling_rate"), "array" or "text"')
            return {"audio": audio, "sampling_rate": int(rate)}
        if isinstance(inputs, np.ndarray):
            return {"audio": inputs, "sampling_rate": SAMPLE_RATE}
        raise ValueError(f"speech-text-chat takes text, a waveform, a path or a dict, not {type(inputs).__name__}")

    def _forward(self, model_inputs, **forward_kwargs):
        if any(isinstance(v, (list, tuple)) for v in model_inputs.values()):  # collated by batch_size > 1
            raise ValueError("speech-text-chat answers one question at a time (batch_size=1); pass a list to get "
                             "one answer per item")  # fmt: skip
        return {"event": self.chat.reply(**model_inputs, **forward_kwargs)}

    def postprocess(self, model_outputs) -> dict[str, Any]:
        e = model_outputs["event"]
        return {"text": e.text, "audio": e.audio, "sampling_rate": e.sampling_rate, "speech_ids": e.speech_ids,
                "history": e.history, "refused": e.refused, "truncated": e.truncated}  # fmt: skip


if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=SpeechTextChatPipeline, pt_model=AutoModel)

__all__ = ["TASK", "SpeechTextChatPipeline"]

"""The Space's two tool tabs: what the speech tokenizer makes of audio, and speech from text without the LM.

* **audio -> speech tokens**: the clip's log-mel spectrogram (the tokenizer's input), its speech token ids at
  12.5 Hz, and what the tokenizer's own ASR head reads back from those ids (what the tokens carry).
* **text -> speech**: the text-to-token model's speech ids for a sentence (the synthesizer that built the
  interleaved data) through the speech decoder, and the ASR reading of those ids (a round trip).

Both reuse the chat's speech tokenizer, processor and decoder; the text-to-token model is optional.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from modeling_speechtext.audio import load_audio
from modeling_speechtext.constants import SAMPLE_RATE

MAX_TOOL_SECONDS = 30.0


def int16_pcm(audio: np.ndarray) -> np.ndarray:
    """Float audio -> int16 PCM for the browser (clipped; gradio would otherwise convert it with a warning)."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def spectrogram_png(features: np.ndarray, title: str) -> np.ndarray:
    """A log-mel `[n_mels, frames]` as an RGB image. A `Figure` on the Agg canvas, not pyplot: pyplot's global
    state is not safe across the app's worker threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(features, origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def tokenize_audio(chat, audio_path):
    """-> (spectrogram image, token ids as text, ASR reading, status)."""
    if not audio_path:
        return None, "", "", "Record or upload a clip first."
    try:
        wave = load_audio(str(audio_path), SAMPLE_RATE)
        seconds = len(wave) / SAMPLE_RATE
        if seconds > MAX_TOOL_SECONDS:
            raise ValueError(f"the clip lasts {seconds:.1f} s; the limit here is {MAX_TOOL_SECONDS:g} s")
        feats = chat.processor.feature_extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        ids = [t - chat.model.config.audio_offset for t in chat.model.encode_speech(feats["input_features"])[0]]
        heard = chat.model.transcribe_speech([ids])[0]
        image = spectrogram_png(feats["input_features"][0].numpy(), f"{seconds:.2f} s -> {len(ids)} speech tokens")
    except Exception as err:  # noqa: BLE001 - a message in the page, the app keeps serving
        return None, "", "", f"Could not tokenize: {err}"
    rate = len(ids) / seconds if seconds else 0.0
    return image, " ".join(map(str, ids)), heard, f"{len(ids)} tokens, {rate:.1f} per second"


def speak_text(chat, synthesizer, text, max_chars: int):
    """-> ((rate, int16 audio) or None, token ids as text, ASR reading, status)."""
    text = (text or "").strip()
    if synthesizer is None:
        return None, "", "", "No text-to-token model is loaded (run folder with text_to_token/, or SPEECHTEXT_T2T)."
    if not text:
        return None, "", "", "Type a sentence first."
    if len(text) > max_chars:
        return None, "", "", f"That text is {len(text)} characters long; the limit is {max_chars}."
    try:
        ids = synthesizer.synthesize([text])[0]
        if not ids:
            return None, "", "", "The text-to-token model produced no speech for this text."
        audio = chat.decoder.decode(ids, voice=chat.voice).float().cpu().numpy()
        heard = chat.model.transcribe_speech([ids])[0]
    except Exception as err:  # noqa: BLE001
        return None, "", "", f"Could not synthesize: {err}"
    return (chat.sampling_rate, int16_pcm(audio)), " ".join(map(str, ids)), heard, f"{len(ids)} speech tokens, " \
        f"{len(audio) / chat.sampling_rate:.2f} s"  # fmt: skip


def add_tool_tabs(chat, synthesizer, max_text_chars: int, concurrency: int) -> None:
    """Inside an open `gr.Blocks`: the two tabs, with API names `tokenize` and `speak`."""
    with gr.Tab("audio -> speech tokens"):
        with gr.Row():
            clip = gr.Audio(sources=["microphone", "upload"], type="filepath", label="a clip")
            with gr.Column():
                image = gr.Image(label="log-mel spectrogram", interactive=False)
                ids = gr.Textbox(label="speech token ids (12.5 per second)", lines=3)
                heard = gr.Textbox(label="what the tokenizer's ASR head reads from them")
                status = gr.Markdown()
        gr.Button("Tokenize").click(lambda a: tokenize_audio(chat, a), [clip], [image, ids, heard, status],
                                    api_name="tokenize", concurrency_limit=concurrency, concurrency_id="model")  # fmt: skip
    with gr.Tab("text -> speech"):
        with gr.Row():
            text = gr.Textbox(label="a sentence", value="Mary went to the kitchen.", max_length=max_text_chars * 2)
            with gr.Column():
                audio = gr.Audio(label="speech (text-to-token model + decoder)", interactive=False)
                t_ids = gr.Textbox(label="speech token ids", lines=3)
                t_heard = gr.Textbox(label="ASR reading of those ids")
                t_status = gr.Markdown()
        gr.Button("Speak").click(lambda t: speak_text(chat, synthesizer, t, max_text_chars), [text],
                                 [audio, t_ids, t_heard, t_status], api_name="speak",
                                 concurrency_limit=concurrency, concurrency_id="model")  # fmt: skip


__all__ = ["add_tool_tabs", "int16_pcm", "speak_text", "spectrogram_png", "tokenize_audio"]

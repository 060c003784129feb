"""speechtext Space: ask the spoken chat model a question by voice (or text); its answer streams back as text and
speech, with the time to the first audio shown under each answer. Two more tabs show what the speech tokenizer
makes of a clip (spectrogram, token ids, its ASR reading) and speak a sentence with the text-to-token model and the
decoder (`tools_tabs.py`).

    python spaces/app.py --run runs/demo                       # a finished pipeline run folder
    SPEECHTEXT_MODEL=user/speechtext-chat SPEECHTEXT_DECODER=user/speechtext-decoder python spaces/app.py

The engine is `SpeechTextChat` (`modeling_speechtext/generation/speech_text_chat.py`): its input checks are the
app's, and every refusal or error becomes a message in the page while the app keeps serving the next request.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from pathlib import Path

import gradio as gr

logger = logging.getLogger(__name__)
MAX_TEXT_CHARS = 600
MAX_FILE_SIZE = "20mb"  # uploads are decoded whole before the duration check
EXAMPLES = ["Mary went to the kitchen. Where is Mary?",
            "John moved to the garden. Daniel went to the office. Is John in the garden?"]  # fmt: skip


def _space_config() -> dict:
    """`space.json` beside the app: the model repos `speechtext publish` wrote into a published Space."""
    import json

    path = Path(__file__).with_name("space.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def load_synthesizer(run: str | None = None, t2t: str | None = None):
    """The text-to-token model for the text -> speech tab: `t2t`, SPEECHTEXT_T2T, `space.json`, or the run's
    text_to_token/ (folders or Hub ids)."""
    from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer

    run = run or os.environ.get("SPEECHTEXT_RUN")
    path = t2t or os.environ.get("SPEECHTEXT_T2T") or (None if run else _space_config().get("t2t"))
    if path is None and run and (Path(run) / "text_to_token" / "config.json").is_file():
        path = str(Path(run) / "text_to_token")
    if path and not Path(path).is_dir() and not str(path).startswith((".", "/")) and str(path).count("/") == 1:
        # a Hub id: the synthesizer reads a local folder
        from huggingface_hub import snapshot_download

        path = snapshot_download(path)
    return TextToTokenSynthesizer.from_pretrained(path) if path else None


def load_chat(run: str | None = None, model: str | None = None, decoder: str | None = None, **kwargs):
    """The engine from a run folder, or from a saved model + decoder (folders or Hub ids); arguments first, then
    the SPEECHTEXT_RUN / SPEECHTEXT_MODEL / SPEECHTEXT_DECODER environment variables, then `space.json` (a published
    Space)."""
    from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

    run = run or os.environ.get("SPEECHTEXT_RUN")
    published = {} if run else _space_config()  # a run folder brings all its models
    model = model or os.environ.get("SPEECHTEXT_MODEL") or published.get("model")
    decoder = decoder or os.environ.get("SPEECHTEXT_DECODER") or published.get("decoder")
    if not (run or model):
        raise ValueError("no model: pass --run (a pipeline run folder) or --model/--decoder, or set SPEECHTEXT_RUN")
    return SpeechTextChat.from_pretrained(run or model, decoder=decoder, **kwargs)


def build_app(chat, synthesizer=None, max_text_chars: int = MAX_TEXT_CHARS, concurrency: int = 2) -> gr.Blocks:
    """The Blocks app around one engine (and, for the text -> speech tab, a text-to-token synthesizer). Outputs per
    answer: the conversation, the streamed speech, the whole answer's audio (for download and for API clients),
    and a status line (timings or what was wrong)."""
    from tools_tabs import add_tool_tabs, int16_pcm

    def answer(audio_path, text, history):
        history = list(history or [])
        text = (text or "").strip()
        if not audio_path and not text:
            yield _view(history), None, None, "Say or type a question first.", history
            return
        if audio_path and text:
            yield _view(history), None, None, "Both a clip and a typed question are given: clear one of them.", history
            return
        if text and len(text) > max_text_chars:
            yield _view(history), None, None, f"That question is {len(text)} characters long; the limit is " \
                f"{max_text_chars}.", history  # fmt: skip
            return
        start, reply, status = time.perf_counter(), "", ""
        try:
            stream = chat.stream(audio=audio_path if audio_path else None, text=None if audio_path else text,
                                 history=history)  # fmt: skip
            for event in stream:
                if event.kind == "text":
                    reply += event.text
                    yield (
                        _view(history, audio_path or text, reply, spoken=bool(audio_path)),
                        None,
                        None,
                        "answering...",
                        history,
                    )
                elif event.kind == "audio":
                    status = status or f"first audio after {time.perf_counter() - start:.2f} s"
                    chunk = (event.sampling_rate, int16_pcm(event.audio))
                    yield (
                        _view(history, audio_path or text, reply, spoken=bool(audio_path)),
                        chunk,
                        None,
                        status,
                        history,
                    )
                elif event.kind == "done":
                    if event.refused:
                        yield _view(history), None, None, event.text, history
                        return
                    total = event.timings.get("total_s", time.perf_counter() - start)
                    first = event.timings.get("first_audio_s")
                    status = (f"first audio {first:.2f} s, " if first is not None else "") + f"total {total:.2f} s" \
                        + (" (cut at the length limit)" if event.truncated else "")  # fmt: skip
                    audio = None if event.audio is None else (event.sampling_rate, int16_pcm(event.audio))
                    yield _view(event.history), None, audio, status, event.history
        except Exception as err:  # noqa: BLE001 - bad input or a failure: say so in the page, keep serving
            logger.exception("chat request failed")
            yield _view(history), None, None, f"Could not answer: {err}", history

    with gr.Blocks(title="speechtext: spoken chat") as app:
        gr.Markdown("# speechtext spoken chat\nAsk by voice (record or upload) or type; the answer comes back as "
                    "text and speech while it is generated.")  # fmt: skip
        state = gr.State([])
        with gr.Tab("spoken chat"), gr.Row():
            with gr.Column():
                audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="spoken question")
                text_in = gr.Textbox(label="or type the question", max_length=max_text_chars * 2)
                ask = gr.Button("Ask", variant="primary")
                clear = gr.Button("New conversation")
                gr.Examples(EXAMPLES, inputs=[text_in])
            with gr.Column():
                conversation = gr.Chatbot(label="conversation")
                speech = gr.Audio(label="spoken answer (streamed)", streaming=True, autoplay=True, interactive=False)
                whole = gr.Audio(label="whole answer", interactive=False)
                status = gr.Markdown()
        ask.click(answer, [audio_in, text_in, state], [conversation, speech, whole, status, state],
                  api_name="chat", concurrency_limit=concurrency, concurrency_id="model")  # fmt: skip
        clear.click(lambda: ([], None, None, "", []), None, [conversation, speech, whole, status, state],
                    api_name="clear")  # fmt: skip
        add_tool_tabs(chat, synthesizer, max_text_chars, concurrency)
    app.queue(default_concurrency_limit=concurrency, max_size=32)
    return app


def _view(history, question=None, reply=None, spoken: bool = False) -> list[dict]:
    """The engine's history (speech as ids) + the answer in progress -> what the Chatbot shows (text only)."""
    shown = []
    for m in history:
        content = m["content"]
        if m["role"] == "user":
            shown.append({"role": "user", "content": content if isinstance(content, str) else "(spoken question)"})
        elif m["role"] == "assistant":
            shown.append({"role": "assistant", "content": _strip_speech(content[0]["text"])})
    if question is not None:
        shown += [{"role": "user", "content": "(spoken question)" if spoken else question},
                  {"role": "assistant", "content": reply or "..."}]  # fmt: skip
    return shown


def _strip_speech(text: str) -> str:
    """An assistant turn's text without its speech blocks (the chunks of streaming thoughts)."""
    return " ".join(re.sub(r"<\|begin_of_audio\|>.*?(<\|end_of_audio\|>|$)", "", text).split())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a pipeline run folder")
    parser.add_argument("--model", help="a saved SpeechTextForConditionalGeneration + processor (folder or Hub id)")
    parser.add_argument("--decoder", help="speech decoder (folder or Hub id)")
    parser.add_argument("--t2t", help="text-to-token model for the text -> speech tab (default: the run's)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    chat = load_chat(args.run, args.model, args.decoder)
    build_app(chat, load_synthesizer(args.run, args.t2t), concurrency=args.concurrency).launch(
        server_name="0.0.0.0", server_port=args.port, max_file_size=MAX_FILE_SIZE
    )


if __name__ == "__main__":
    main()

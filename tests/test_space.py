"""The Space (spaces/app.py), launched headless and driven through `gradio_client`: a spoken question gets a text
and an audio answer; bad input gets a message in the page and the app keeps serving."""

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from speech_text_fixtures import clip, tiny_speech_text
from test_speech_text_chat import tiny_decoder

from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces"))
pytestmark = pytest.mark.slow  # a local server, ~10 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    from app import build_app
    from gradio_client import Client

    model, proc = tiny_speech_text()
    model.transcribe_speech = lambda speech: ["words"] * len(speech)  # an untrained ASR may hear nothing
    from t2t_fixtures import tiny_t2t

    app = build_app(SpeechTextChat(model, proc, tiny_decoder(), max_new_tokens=60, max_question_seconds=5),
                    tiny_t2t(codebook_size=16, max_tokens_per_char=1.0), max_text_chars=600)  # fmt: skip
    port = _free_port()
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.close()


def test_spoken_question_gets_text_and_audio_and_bad_input_a_message(client, tmp_path):
    from gradio_client import handle_file

    question = tmp_path / "q.wav"
    sf.write(question, clip(0.8), 16000)
    conversation, _, whole, status, *_ = client.predict(handle_file(str(question)), "", api_name="/chat")
    assert [m["role"] for m in conversation] == ["user", "assistant"] and conversation[1]["content"]
    wave, rate = sf.read(whole)
    assert rate == 16000 and len(wave) > 1280 and "first audio" in status and "total" in status
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not a wav file")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(clip(1.0), 8), 16000)  # 8 s against the 5 s limit
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    for audio, text, expected in [(None, "", "Say or type"), (handle_file(str(bad)), "", "Could not answer"),
                                  (handle_file(str(long)), "", "max_question_seconds"),
                                  (handle_file(str(silent)), "", "could not hear"),
                                  (handle_file(str(question)), "where is mary", "clear one of them"),
                                  (None, "where is mary " * 50, "the limit is 600")]:  # fmt: skip
        out = client.predict(audio, text, api_name="/chat")
        assert expected.lower() in out[3].lower(), (expected, out[3])
        assert out[2] is None  # no answer audio for a refused question
    long = client.predict(None, "where is mary " * 23, api_name="/chat")  # 300 characters: not a path
    assert "total" in long[3], long[3]
    again = client.predict(None, "where is mary", api_name="/chat")  # still serving after the bad requests
    assert again[0][-1]["role"] == "assistant" and again[0][-1]["content"] and "total" in again[3]


def test_tool_tabs_tokenize_a_clip_and_speak_a_sentence(client, tmp_path):
    from gradio_client import handle_file

    question = tmp_path / "q.wav"
    sf.write(question, clip(0.8), 16000)
    image, ids, heard, status = client.predict(handle_file(str(question)), api_name="/tokenize")
    assert Path(image).is_file() and len(ids.split()) == 10 and "10 tokens" in status  # 0.8 s at 12.5 Hz
    assert all(0 <= int(i) < 16 for i in ids.split())
    audio, s_ids, _, s_status = client.predict("Mary went to the kitchen.", api_name="/speak")
    wave, rate = sf.read(audio)
    assert rate == 16000 and len(wave) == len(s_ids.split()) * 1280 and "speech tokens" in s_status
    assert client.predict(None, api_name="/tokenize")[3].startswith("Record or upload")
    assert "limit is 600" in client.predict("word " * 150, api_name="/speak")[3]

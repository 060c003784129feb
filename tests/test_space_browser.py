"""The Space in a real headless browser (Debian chromium through Playwright): upload a spoken question, get an
answer, save a screenshot; assertions on the page content. Also: asking with no input shows the message."""

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import soundfile as sf
from speech_text_fixtures import clip, tiny_speech_text
from test_speech_text_chat import tiny_decoder

from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # a server and a browser, ~10 s
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh installs Debian's)"),
]


def test_upload_a_question_in_the_browser_and_read_the_answer(tmp_path):
    pytest.importorskip("playwright", reason="the dev extra installs playwright")
    from app import build_app
    from playwright.sync_api import sync_playwright

    model, proc = tiny_speech_text()
    model.transcribe_speech = lambda speech: ["words"] * len(speech)  # an untrained ASR may hear nothing
    app = build_app(SpeechTextChat(model, proc, tiny_decoder(), max_new_tokens=60))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    question = tmp_path / "question.wav"
    sf.write(question, clip(0.8), 16000)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Ask").click()  # nothing given yet
            page.wait_for_selector("text=Say or type a question first", timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(str(question))
            page.wait_for_selector("audio, wave, .waveform-container, [data-testid='waveform-spoken question']",
                                   timeout=30_000)  # the upload landed in the component  # fmt: skip
            page.get_by_role("button", name="Ask").click()
            page.wait_for_selector("text=first audio", timeout=60_000)
            page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
            messages = [m.strip() for m in page.locator(".message").all_inner_texts() if m.strip()]
            status = page.get_by_text("total").first.inner_text()
            browser.close()
    finally:
        app.close()
    assert "(spoken question)" in messages and any(m != "(spoken question)" for m in messages), messages
    assert "first audio" in status and (tmp_path / "answer.png").stat().st_size > 10_000

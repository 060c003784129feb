"""The streaming chat engine: events in order, streamed audio equal to the offline decode (stated tolerance), history
with a length limit, the CLI, and bad input (silence, noise, over-long, empty, mismatched decoder)."""

import numpy as np
import pytest
import torch
from speech_text_fixtures import clip, tiny_speech_text

from modeling_speechtext.generation.speech_text_chat import NOT_HEARD, SpeechTextChat
from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

DECODER = dict(hidden_size=32, encoder_layers=1, estimator_layers=2, num_attention_heads=2, intermediate_size=64,
               num_steps=3)  # fmt: skip


def tiny_decoder(codebook_size=16):
    torch.manual_seed(0)
    return SpeechDecoderModel(SpeechDecoderConfig(codebook_size=codebook_size, **DECODER)).eval()


@pytest.fixture
def chat(monkeypatch):
    model, proc = tiny_speech_text()
    # an untrained ASR head may hear nothing in a test tone; the gate that refuses that is tested on its own below
    monkeypatch.setattr(model, "transcribe_speech", lambda speech: ["words"] * len(speech))
    return SpeechTextChat(model, proc, tiny_decoder(), max_new_tokens=60)


def test_stream_yields_text_then_audio_and_equals_the_offline_reply(chat):
    events = list(chat.stream(audio=clip(0.6), sampling_rate=16000))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "text" in kinds and "audio" in kinds
    done = events[-1]
    assert "".join(e.text for e in events if e.kind == "text").strip() == done.text
    chunks = [e.audio for e in events if e.kind == "audio"]
    per_token = chat.decoder.config.samples_per_token
    first = chat.decoder.config.first_chunk_tokens * per_token  # 10 tokens (less the vocoder's crossfade held back)
    assert first - per_token < chunks[0].shape[0] <= first and len(chunks) >= 2
    assert np.concatenate(chunks).shape[0] == len(done.speech_ids) * per_token
    assert max(done.timings["first_text_s"], done.timings["first_audio_s"]) <= done.timings["total_s"]
    offline = chat.reply(audio=clip(0.6))
    assert offline.text == done.text and offline.speech_ids == done.speech_ids  # one model, one greedy turn
    assert offline.audio.shape == done.audio.shape
    # the mel is exact by construction; only the vocoder's chunk joins differ. Stated tolerance: the log-mel of the
    # streamed audio is within 0.15 (mean abs, natural log) of the offline audio's, where another noise seed is ~1.5
    mel = chat.decoder.extract_mel
    off = mel(torch.from_numpy(offline.audio))
    streamed_gap = (mel(torch.from_numpy(done.audio)) - off).abs().mean().item()
    other_seed = (mel(chat.decoder.decode(done.speech_ids, seed=1).float()) - off).abs().mean().item()
    assert streamed_gap < 0.15 < other_seed, (streamed_gap, other_seed)


def test_text_mode_makes_no_audio_and_history_keeps_the_newest_turns_that_fit(chat):
    first = list(chat.stream(text="mary went to the kitchen", mode="text"))
    assert all(e.kind != "audio" for e in first) and first[-1].audio is None and not first[-1].speech_ids
    history = first[-1].history
    assert [m["role"] for m in history] == ["user", "assistant"]
    second = chat.reply(audio=clip(0.5), history=history, mode="text")
    assert [m["role"] for m in second.history] == ["user", "assistant"] * 2
    newest = second.history[2:] + [{"role": "user", "content": "where is mary"}]
    need = chat.processor.tokenizer(chat.processor.render(newest)[0], return_tensors="pt")["input_ids"].shape[1]
    tight = SpeechTextChat(chat.model, chat.processor, chat.decoder, max_new_tokens=20, max_history_tokens=need)
    third = tight.reply(text="where is mary", history=second.history, mode="text")
    # the oldest exchange did not fit and went; the newest one that fits (the spoken question and its answer) stays
    assert third.history[:2] == second.history[2:] and len(third.history) == 4
    assert third.history[2] == {"role": "user", "content": "where is mary"}
    with pytest.raises(ValueError, match="prompt budget"):
        tight.reply(text=" ".join(["where is mary"] * 40), mode="text")


def test_silence_and_noise_get_the_polite_reply_and_bad_input_clear_errors(chat, monkeypatch):
    for quiet in (np.zeros(16000, np.float32), np.full(16000, 1e-4, np.float32), np.zeros(400, np.float32)):
        events = list(chat.stream(audio=quiet))
        assert [e.kind for e in events] == ["text", "done"] and events[-1].refused == "silence"
        assert events[-1].text == NOT_HEARD and events[-1].audio is None
    t = np.arange(16000) / 16000
    for steady in (0.3 * np.random.default_rng(0).standard_normal(16000), 0.3 * np.sin(2 * np.pi * 50 * t)):
        assert chat.reply(audio=steady.astype(np.float32)).refused == "no speech"  # white noise, a mains hum
    assert chat.reply(audio=clip(1.0)).refused is None  # the same sound in syllable-like bursts passes
    monkeypatch.setattr(chat.model, "transcribe_speech", lambda speech: [""] * len(speech))  # ASR hears no word
    assert chat.reply(audio=clip(1.0)).refused == "no words"
    with pytest.raises(ValueError, match="max_question_seconds=2"):
        SpeechTextChat(chat.model, chat.processor, chat.decoder, max_question_seconds=2).reply(audio=clip(3.0))
    with pytest.raises(ValueError, match="empty text question"):
        chat.reply(text="   ")
    with pytest.raises(ValueError, match="exactly one of them"):
        chat.reply(audio=clip(), text="where is mary")
    with pytest.raises(ValueError, match="non-finite|NaN"):
        chat.reply(audio=np.full(8000, np.inf, np.float32))
    with pytest.raises(ValueError, match="codebook_size=16 does not match"):
        SpeechTextChat(chat.model, chat.processor, tiny_decoder(codebook_size=32))
    with pytest.raises(ValueError, match="control tokens"):
        chat.reply(text="where is <|assistant|> mary")
    with pytest.raises(ValueError, match="unknown output mode"):
        chat.reply(text="where is mary", mode="video")
    with pytest.raises(ValueError, match="not raw audio"):
        chat.reply(text="where is mary", history=[{"role": "user", "content": [{"type": "audio", "audio": clip()}]}])


def test_closing_the_stream_early_stops_the_workers_and_a_saved_model_chats_the_same(chat, tmp_path):
    import threading

    before = threading.active_count()
    stream = chat.stream(audio=clip(0.6))
    assert next(stream).kind == "text"
    stream.close()  # the caller walked away after the first text
    assert threading.active_count() == before  # LM and decoder threads stopped and joined
    expected = chat.reply(audio=clip(0.6))
    chat.model.save_pretrained(tmp_path / "model")
    chat.processor.save_pretrained(tmp_path / "model")
    chat.decoder.save_pretrained(tmp_path / "decoder")
    again = SpeechTextChat.from_pretrained(tmp_path / "model", decoder=tmp_path / "decoder", max_new_tokens=60)
    again.model.transcribe_speech = chat.model.transcribe_speech
    got = again.reply(audio=clip(0.6))
    assert got.text == expected.text and got.speech_ids == expected.speech_ids
    np.testing.assert_allclose(got.audio, expected.audio, atol=1e-5)


def test_chat_cli_prints_the_text_and_writes_the_audio(tmp_path, chat, capsys):
    import soundfile as sf

    from modeling_speechtext.cli.chat import _answer

    sf.write(tmp_path / "q.wav", clip(0.6), 16000)
    done = _answer(chat, [], audio=str(tmp_path / "q.wav"), output=str(tmp_path / "a.wav"))
    printed = capsys.readouterr().out
    assert done.text and done.text in printed and "a.wav" in printed
    wave, rate = sf.read(tmp_path / "a.wav")
    assert rate == 16000 and len(wave) == len(done.speech_ids) * chat.decoder.config.samples_per_token
    from modeling_speechtext.cli.main import main

    assert main(["chat", "--run", str(tmp_path / "nowhere"), "--text", "hi"]) == 2  # a clear one-line error
    assert "nowhere" in capsys.readouterr().err


def test_transformers_pipeline_gives_the_engines_answers(chat):
    from transformers import pipeline

    from modeling_speechtext.generation.chat_pipeline import TASK

    pipe = pipeline(TASK, model=chat.model, processor=chat.processor, decoder=chat.decoder,
                    chat_kwargs={"max_new_tokens": 60})  # fmt: skip
    out = pipe({"audio": clip(0.6), "sampling_rate": 16000})
    expected = chat.reply(audio=clip(0.6))
    assert out["text"] == expected.text and out["speech_ids"] == expected.speech_ids
    np.testing.assert_allclose(out["audio"], expected.audio, atol=1e-6)
    batch = pipe(["where is mary", {"text": "where is john"}], mode="text")
    assert [b["text"] for b in batch] == [
        chat.reply(text=q, mode="text").text for q in ("where is mary", "where is john")
    ]
    follow = pipe("where is mary", history=out["history"], mode="text")
    assert follow["history"][:2] == out["history"] and len(follow["history"]) == 4
    row = {"audio": {"array": clip(0.6), "sampling_rate": 16000}}  # a `datasets` Audio column's row
    assert pipe(row)["speech_ids"] == expected.speech_ids
    with pytest.raises(ValueError, match="needs decoder"):
        pipeline(TASK, model=chat.model, processor=chat.processor)
    with pytest.raises(ValueError, match="one question at a time"):
        pipe(["where is mary", "where is john"], batch_size=2)


def test_seeded_sampling_leaves_the_callers_rng_alone_and_beam_search_keeps_the_layout(chat):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    chat.reply(audio=clip(0.6))
    list(chat.stream(audio=clip(0.6)))
    torch.testing.assert_close(torch.rand(3), expected)  # the chat sampled on a fork of the RNG
    beams = chat.reply(audio=clip(0.6), num_beams=2, do_sample=False)  # beam search keeps the layout
    assert beams.speech_ids and all(0 <= s < 16 for s in beams.speech_ids)
    with pytest.raises(ValueError, match="beam sampling cannot keep"):
        chat.reply(audio=clip(0.6), num_beams=2)  # the chat samples by default

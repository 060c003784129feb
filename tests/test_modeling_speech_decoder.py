"""Speech decoder: config, shapes, save/load, remote-code loading, exact streaming, smooth joins, bad input."""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
from modeling_speechtext.models.speech_decoder.feature_extraction_speech_decoder import (
    LogMelSpectrogram,
    SpeechDecoderFeatureExtractor,
)
from modeling_speechtext.models.speech_decoder.layers_speech_decoder import block_attention_mask
from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
from modeling_speechtext.models.speech_decoder.vocoder import GriffinLimVocoder, StreamingVocoder

TINY = dict(
    codebook_size=64, hidden_size=32, encoder_layers=1, estimator_layers=2, num_attention_heads=2,
    intermediate_size=64, num_steps=3,
)  # fmt: skip


def tiny_model(**overrides) -> SpeechDecoderModel:
    torch.manual_seed(0)
    return SpeechDecoderModel(SpeechDecoderConfig(**{**TINY, **overrides})).eval()


def harmonic_signal(seconds: float = 6.0, sr: int = 16000) -> torch.Tensor:
    """A voiced-like test signal: 19 harmonics of a gliding 80-160 Hz pitch, slowly amplitude-modulated."""
    t = torch.arange(int(seconds * sr)) / sr
    phase = 2 * math.pi * torch.cumsum(120 + 40 * torch.sin(2 * math.pi * 0.7 * t), 0) / sr
    envelope = 0.6 + 0.4 * torch.sin(2 * math.pi * 1.3 * t)
    return 0.2 * envelope * sum(torch.sin(k * phase) / k for k in range(1, 20))


def test_config_round_trip_and_derived_values(tmp_path):
    config = SpeechDecoderConfig(**TINY, voice_names=["a", "b"], default_voice="b")
    assert config.frames_per_token == 8 and config.samples_per_token == 1280 and config.frame_rate == 100
    config.save_pretrained(tmp_path)
    loaded = SpeechDecoderConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.voice_names == ["a", "b"] and loaded.chunk_tokens == [25, 50, 100, 150, 200]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hop_length=150), "mel frames per token"),
        (dict(first_chunk_tokens=7), "multiples of block_size"),
        (dict(objective="diffusion"), "objective"),
        (dict(hidden_size=30), "heads of even size"),
        (dict(voice_names=["a"], default_voice="z"), "default_voice"),
    ],
)
def test_config_rejects_inconsistent_values(overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        SpeechDecoderConfig(**{**TINY, **overrides})


def test_block_attention_mask():
    pos = torch.arange(6)
    mask = block_attention_mask(pos, pos, block=2)[0, 0]
    assert mask[0].tolist() == [True, True, False, False, False, False]  # sees its own block's future
    assert mask[3].tolist() == [True, True, True, True, False, False]
    windowed = block_attention_mask(pos, pos, block=2, context_blocks=1)[0, 0]
    assert windowed[5].tolist() == [False, False, True, True, True, True]
    padded = block_attention_mask(pos, pos, block=0, key_valid=torch.tensor([[1, 1, 1, 0, 0, 0]]).bool())[0, 0]
    assert padded[4].tolist() == [True, True, True, False, True, False]  # padding masked, self kept (no NaN)


@pytest.mark.parametrize("objective, prior", [("flow_matching", 0.0), ("regression", 0.0), ("flow_matching", 1.0)])
def test_forward_loss_and_gradients(objective, prior):
    model = tiny_model(objective=objective, prior_loss_weight=prior, voice_names=["a", "b"]).train()
    ids = torch.randint(0, 64, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mel = torch.randn(2, 80, 80) - 5
    out = model(ids, attention_mask=mask, mel=mel, voice_ids=torch.tensor([0, 1]))
    assert out.prediction.shape == (2, 80, 80) and out.frame_mask.sum().item() == 80 + 48
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.encoder.embed_tokens.weight.grad.abs().sum() > 0
    assert model.voice_embed.weight.grad.abs().sum() > 0
    # padded frames do not influence the loss
    mel2 = mel.clone()
    mel2[1, 48:] = 100.0
    torch.manual_seed(1)
    a = model.eval()(ids, attention_mask=mask, mel=mel).loss
    torch.manual_seed(1)
    b = model(ids, attention_mask=mask, mel=mel2).loss
    assert torch.allclose(a, b)


def test_generate_and_decode_shapes_and_batch_consistency():
    model = tiny_model()
    ids = list(range(23))
    one = model.generate_mel(ids).mel
    assert one.shape == (1, 23 * 8, 80)
    batch = model.generate_mel([ids, ids[:10]])
    assert batch.mel_lengths.tolist() == [184, 80]
    assert torch.allclose(batch.mel[0], one[0], atol=1e-5)  # padding of the other item does not leak
    assert torch.allclose(batch.mel[1, :80], model.generate_mel(ids[:10]).mel[0], atol=1e-5)
    wave = model.decode(ids)
    assert wave.dim() == 1 and wave.shape[0] == 23 * 1280 and torch.isfinite(wave).all()
    waves = model.decode(torch.tensor([ids[:15], ids[5:20]]))
    assert [w.shape[0] for w in waves] == [15 * 1280, 15 * 1280]


def test_attn_implementation_is_honoured(tmp_path):
    """`attn_implementation="eager"` runs the explicit softmax path (same numbers as SDPA), and it is the path taken."""
    from unittest import mock

    model = tiny_model(voice_names=["a", "b"])
    model.save_pretrained(tmp_path)
    eager = SpeechDecoderModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = SpeechDecoderModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    ids = [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 0, 0, 0, 0]]
    mask = torch.tensor([[1] * 10, [1] * 6 + [0] * 4])
    mel = torch.randn(2, 80, 80)
    with torch.no_grad():
        torch.manual_seed(1)
        a = eager(input_ids=torch.tensor(ids), attention_mask=mask, mel=mel).loss
        torch.manual_seed(1)
        with mock.patch.object(F, "scaled_dot_product_attention", side_effect=AssertionError("SDPA on eager")):
            torch.manual_seed(1)
            b = eager(input_ids=torch.tensor(ids), attention_mask=mask, mel=mel).loss  # never calls SDPA
        torch.manual_seed(1)
        c = sdpa(input_ids=torch.tensor(ids), attention_mask=mask, mel=mel).loss
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_save_load_round_trip_is_exact(tmp_path):
    model = tiny_model(voice_names=["a", "b"])
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    assert (tmp_path / "modeling_speech_decoder.py").is_file() and (tmp_path / "vocoder.py").is_file()
    loaded = SpeechDecoderModel.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    assert torch.equal(model.generate_mel(ids, voice="b").mel, loaded.generate_mel(ids, voice="b").mel)


def test_remote_code_round_trip_in_fresh_process(tmp_path):
    """The saved folder loads with AutoModel + trust_remote_code where this package cannot be imported."""
    model = tiny_model()
    model.save_pretrained(tmp_path / "decoder")
    expected = model.generate_mel([5, 6, 7, 8, 9]).mel
    wave = harmonic_signal(0.5)
    audio = model.decode([5, 6, 7, 8, 9])
    torch.save(
        {"mel": expected, "audio": audio, "wave": wave, "target": model.extract_mel(wave, num_tokens=6)},
        tmp_path / "ref.pt",
    )
    unit = Path(SpeechDecoderModel.__module__.replace(".", "/")).parent  # save_pretrained copies the whole unit
    sources = {p.name for p in (Path(__file__).parents[1] / unit).glob("*.py")} - {"__init__.py"}
    assert "flow_matching_speech_decoder.py" in sources <= {p.name for p in (tmp_path / "decoder").glob("*.py")}
    script = textwrap.dedent(f"""
        import sys
        sys.modules["modeling_speechtext"] = None  # the package must not be needed
        import torch
        from transformers import AutoFeatureExtractor, AutoModel
        torch.set_num_threads(1)  # as the test process: the same reduction order, so equal to the last bit
        path = {str(tmp_path / "decoder")!r}
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
        assert type(model).__name__ == "SpeechDecoderModel", type(model)
        assert not type(model).__module__.startswith("modeling_speechtext"), type(model).__module__
        mel = model.generate_mel([5, 6, 7, 8, 9]).mel
        assert torch.equal(mel, ref["mel"])
        assert torch.equal(model.decode([5, 6, 7, 8, 9]), ref["audio"])  # the same audio, not only its length
        fe = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=True)
        assert type(fe).__name__ == "SpeechDecoderFeatureExtractor", type(fe)
        assert not type(fe).__module__.startswith("modeling_speechtext"), type(fe).__module__
        out = fe(ref["wave"], sampling_rate=16000, num_tokens=6, return_tensors="pt")
        assert torch.equal(out["mel"][0], ref["target"]) and out["mel_lengths"].tolist() == [48]
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(cfg_strength=0.0, context_blocks=2), dict(objective="regression"), dict(prior_loss_weight=1.0)],
)
def test_streaming_matches_offline(overrides):
    model = tiny_model(**overrides)
    ids = torch.randint(0, 64, (57,)).tolist()
    offline = model.generate_mel(ids).mel[0]
    consumed = []

    def arriving():
        for i, token in enumerate(ids):
            consumed.append(i + 1)
            yield token

    chunks = list(model.decode_stream(arriving(), return_mel=True, chunk_tokens=[15, 20]))
    assert consumed[0] == 1 and len(chunks) == 4  # 10 + 15 + 20 + 12 (final)
    streamed_mel = torch.cat([mel for _, mel in chunks])
    torch.testing.assert_close(streamed_mel, offline, atol=1e-4, rtol=0)  # exact by construction
    audio = torch.cat([a for a, _ in chunks])
    assert audio.shape[0] == model.decode(ids).shape[0] == 57 * 1280


def test_first_chunk_after_first_chunk_tokens():
    model = tiny_model()
    seen = []

    def arriving():
        for token in range(40):
            seen.append(token)
            yield token

    stream = model.decode_stream(arriving())
    first = next(stream)
    assert len(seen) == model.config.first_chunk_tokens == 10
    assert first.shape[0] > 0
    # accepts lists of ids too (an LM streamer hands over several at once)
    assert (
        sum(a.shape[0] for a in model.decode_stream([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], torch.tensor([11])]))
        == 11 * 1280
    )


def _border_jump(y: torch.Tensor, border: int, width: int = 160) -> float:
    """Largest sample-to-sample step at the border relative to the largest step around it (>1 = a click)."""
    d = (y[1:] - y[:-1]).abs()
    around = torch.cat([d[border - width : border - 3], d[border + 3 : border + width]])
    return float(d[border - 3 : border + 3].max() / around.max())


def test_streamed_vocoding_has_no_click_at_chunk_borders():
    mel_extractor, vocoder = LogMelSpectrogram(), GriffinLimVocoder(n_iter=16)
    signal = harmonic_signal(3.0)
    frames = signal.shape[0] // 160
    mel = mel_extractor(signal)[:, :frames]
    results, audios = {}, {}
    for name, streamer in {
        "ours": StreamingVocoder(vocoder, 160, 16, 320),
        "naive": StreamingVocoder(vocoder, 160, 0, 0),
    }.items():
        chunks, start = [], 0
        for size in (80, 120, 100):
            chunks.append(streamer.push(mel[:, start : start + size], final=start + size >= frames))
            start += size
        audio = torch.cat(chunks)
        assert audio.shape[0] == frames * 160
        borders = torch.cumsum(torch.tensor([c.shape[0] for c in chunks[:-1]]), 0).tolist()
        results[name] = max(_border_jump(audio, b) for b in borders)
        audios[name] = audio
    assert results["naive"] > 2.0, results  # the measure does detect plain concatenation
    assert results["ours"] < 1.0, results
    # and the streamed audio is as faithful to the mel as the offline vocoding
    offline_error = (mel_extractor(vocoder(mel[None])[0])[:, :frames] - mel).abs().mean()
    streamed_error = (mel_extractor(audios["ours"])[:, :frames] - mel).abs().mean()
    assert streamed_error < offline_error + 0.05, (streamed_error, offline_error)


def test_griffin_lim_inverts_a_mel():
    mel_extractor, vocoder = LogMelSpectrogram(), GriffinLimVocoder(n_iter=32)
    signal = harmonic_signal(1.0)
    mel = mel_extractor(signal)[:, :100]
    again = mel_extractor(vocoder(mel[None])[0])[:, :100]
    assert (again - mel).abs().mean() < 0.4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.decode([]), "empty speech token list"),
        (lambda m: m.decode(torch.zeros(0, dtype=torch.long)), "empty speech token list"),
        (lambda m: m.decode([1, 2, 64]), r"id 64 at position 2 .*out of range \[0, 64\)"),
        (lambda m: m.decode([1, -1]), "id -1 at position 1"),
        (lambda m: m.decode([[1, 2], [3, 99]]), r"99 at position 1 \(item 1\)"),
        (lambda m: m.decode([1.5, 2.0]), "must be integers"),
        (lambda m: m.decode([1, 2, 3], codebook_size=4096), "codebook_size=4096.*expects codebook_size=64"),
        (lambda m: list(m.decode_stream(iter([]))), "empty speech token stream"),
        (lambda m: list(m.decode_stream([1, 2, 300])), "300 at position 0 \\(stream position 2\\)"),
        (lambda m: list(m.decode_stream([1, 2], codebook_size=128)), "codebook_size=128"),
        (lambda m: m.decode([1, 2], voice="nobody"), "single voice"),
        (
            lambda m: m.check_speech_tokenizer(SpeechDecoderConfig(**{**TINY, "codebook_size": 128})),
            "codebook_size=128",
        ),
    ],
)
def test_bad_input_gives_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model())


# ---------------------------------------------------------------- the feature extractor (mel targets)


def reference_log_mel(wave: torch.Tensor) -> torch.Tensor:
    """The decoder's analysis written out independently: centered STFT, HTK filterbank, log(max(., 1e-5))."""
    import torchaudio

    spec = torch.stft(wave, 1024, 160, 640, torch.hann_window(640), center=True, return_complex=True).abs()
    fbank = torchaudio.functional.melscale_fbanks(513, 0.0, 8000.0, 80, 16000)
    return torch.log(torch.clamp(spec.T @ fbank, min=1e-5))  # [frames, n_mels]


def test_feature_extractor_gives_the_model_s_mel_targets():
    model = tiny_model()
    fe = SpeechDecoderFeatureExtractor.from_config(model.config)
    assert fe.frames_per_token == 8 and fe.silence == pytest.approx(math.log(1e-5))
    wave = harmonic_signal(0.7)  # 11200 samples -> 71 centered frames
    reference = reference_log_mel(wave)
    torch.testing.assert_close(fe.mel(wave), reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.extract_mel(wave), fe.mel(wave))
    cut, padded = model.extract_mel(wave, num_tokens=5), model.extract_mel(wave, num_tokens=10)
    assert cut.shape == (40, 80) and torch.equal(cut, fe.mel(wave)[:40])
    assert padded.shape == (80, 80) and torch.equal(padded[:71], fe.mel(wave)) and (padded[71:] == fe.silence).all()
    # a batch: each clip analysed alone, right-padded with silence; numpy and torch inputs alike
    short = harmonic_signal(0.3)
    out = fe([wave, short.numpy()], sampling_rate=16000, num_tokens=[9, 3], return_tensors="pt")
    assert out["mel"].shape == (2, 72, 80) and out["mel_lengths"].tolist() == [72, 24]
    assert torch.equal(out["mel"][0], model.extract_mel(wave, 9))
    assert torch.equal(out["mel"][1, :24], model.extract_mel(short, 3)) and (out["mel"][1, 24:] == fe.silence).all()
    single = fe(wave, sampling_rate=16000, return_tensors="np")
    assert single["mel"].shape == (1, 71, 80) and single["mel_lengths"].tolist() == [71]


def test_feature_extractor_refuses_another_rate_and_warns_without_one():
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging as hf_logging

    from modeling_speechtext.models.speech_decoder import feature_extraction_speech_decoder as module

    fe = SpeechDecoderFeatureExtractor()
    wave = harmonic_signal(0.2)
    with pytest.raises(ValueError, match="audio is at 22050 Hz but .* expects 16000 Hz"):
        fe(wave, sampling_rate=22050)
    with CaptureLogger(hf_logging.get_logger(module.__name__)) as captured:
        fe(wave)
    assert "pass sampling_rate=" in captured.out
    with pytest.raises(ValueError, match="2 num_tokens for 1 clips"):
        fe([wave], sampling_rate=16000, num_tokens=[1, 2])


def test_feature_extractor_is_saved_with_the_model(tmp_path):
    import json

    model = tiny_model(n_mels=64, f_max=7000.0)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_speech_decoder.SpeechDecoderFeatureExtractor"
    }
    assert saved["feature_size"] == 64 and saved["f_max"] == 7000.0 and "_analysis" not in saved
    assert (tmp_path / "feature_extraction_speech_decoder.py").is_file()
    loaded = SpeechDecoderFeatureExtractor.from_pretrained(tmp_path)
    wave = harmonic_signal(0.4)
    assert torch.equal(loaded.mel(wave, 5), model.extract_mel(wave, 5))

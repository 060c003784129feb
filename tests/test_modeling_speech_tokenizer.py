"""SpeechTokenizerConfig / SpeechTokenizerModel / speech_tokenization: tiny configs, things that can fail."""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from remote_code import run_without_package

from modeling_speechtext.generation.speech_tokenization import (
    build_feature_extractor,
    collate_features,
    encode_waveforms,
    extract_features,
    length_buckets,
)
from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import PAD_TOKEN_ID, SpeechTokenizerModel
from modeling_speechtext.models.speech_tokenizer.tokenization_speech_tokenizer import SpeechTokenizerAsrVocabulary

TINY = dict(
    d_model=32,
    encoder_layers=3,
    quantize_position=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    codebook_size=16,
    codebook_dim=8,
    asr_vocab_size=40,
    max_source_positions=400,
)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return SpeechTokenizerModel(SpeechTokenizerConfig(**{**TINY, **overrides})).eval()


def waves(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.integers(2000, 12000)))).astype(np.float32) for _ in range(n)]


def tiny_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["mary went to the kitchen", "john moved to the garden", "where is mary"] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


# ---------------------------------------------------------------- config


def test_config_round_trip_and_derived_rates(tmp_path):
    cfg = SpeechTokenizerConfig(**TINY)
    cfg.save_pretrained(tmp_path)
    loaded = SpeechTokenizerConfig.from_pretrained(tmp_path)
    assert loaded.to_json_string() == cfg.to_json_string()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "speech_tokenizer"
    assert cfg.encoder_frame_rate == 50.0 and cfg.frame_rate == 12.5 and cfg.tokens_per_second == 12.5
    assert cfg.samples_per_token == 1280
    assert SpeechTokenizerConfig(codebook_size=16384).bitrate == pytest.approx(175.0)
    assert SpeechTokenizerConfig(pooling_kernel_size=2).frame_rate == 25.0


@pytest.mark.parametrize(
    "field,value",
    [
        ("quantize_position", 0),
        ("quantize_position", 9),
        ("d_model", 33),
        ("causal_block_size", 6),
        ("codebook_size", 1),
        ("asr_head", "decoder"),
        ("ema_decay", 1.0),
        ("attention_window", 0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SpeechTokenizerConfig(**{**TINY, field: value})


# ---------------------------------------------------------------- lengths and shapes


@pytest.mark.parametrize("samples", [400, 1279, 1280, 1281, 16000, 16001, 23456])
def test_length_arithmetic_matches_features_and_model(samples):
    model = tiny_model()
    fe = build_feature_extractor(model.config)
    feats = extract_features(fe, np.zeros(samples, dtype=np.float32) + 0.01)
    assert feats.shape == (80, samples // 160)
    frames, tokens = model.get_output_lengths(torch.tensor(feats.shape[-1]))
    assert int(frames) == -(-(samples // 160) // 2)
    assert int(tokens) == -(-int(frames) // 4)
    assert int(model._get_feat_extract_output_lengths(torch.tensor(feats.shape[-1]))) == int(frames)
    _, _, pooled, _ = model._encode_pre_quantizer(torch.from_numpy(feats)[None], None)
    assert pooled.shape[1] == int(tokens)  # the arithmetic matches what the layers actually produce
    ids, lengths = model.encode(torch.from_numpy(feats)[None])
    assert ids.shape == (1, int(tokens)) and int(lengths[0]) == int(tokens)
    # ~12.5 tokens per second: one token per 1280 samples, rounded up
    assert int(tokens) == max(1, -(-(samples // 160) // 8))


def test_forward_shapes_losses_and_gradients():
    model = tiny_model(aux_ctc_weight=0.3, ctc_upsample=2).train()
    feats = torch.randn(3, 80, 90)
    mask = torch.ones(3, 90, dtype=torch.long)
    mask[1, 40:] = 0
    labels = torch.tensor([[1, 2, 3], [4, 5, -100], [6, -100, -100]])
    out = model(feats, mask, labels=labels)
    assert out.token_ids.shape == (3, 12) and out.token_lengths.tolist() == [12, 5, 12]
    assert (out.token_ids[1, 5:] == PAD_TOKEN_ID).all() and (out.token_ids[1, :5] >= 0).all()
    assert out.logits.shape == (3, 24, 41) and out.logit_lengths.tolist() == [24, 10, 24]
    parts = out.ctc_loss + out.commitment_loss + 0.3 * out.aux_ctc_loss
    assert out.loss.item() == pytest.approx(parts.item(), rel=1e-5)
    out.loss.backward()
    # the straight-through estimator must carry the ASR loss into the layers before the quantizer
    assert model.conv_stem.conv1.weight.grad.abs().sum() > 0
    assert model.quantizer.project_in.weight.grad.abs().sum() > 0
    bypass = model(feats, mask, labels=labels, quantize=False)
    assert bypass.token_ids is None and bypass.commitment_loss is None and torch.isfinite(bypass.loss)


def test_character_aux_ctc_targets_and_errors():
    from modeling_speechtext.data.speech_features import collate_aux, encode_char_labels

    model = tiny_model(aux_ctc_weight=0.5, aux_ctc_units="chars").train()
    assert model.aux_ctc_head.out_features == len(model.config.aux_char_vocab) + 1  # letters + blank
    chars = encode_char_labels(model.config, ["Mary went, to the hall!", "Is 2 OK?"])
    vocab = model.config.aux_char_vocab
    assert "".join(vocab[i] for i in chars[0]) == "mary went to the hall"  # scoring form, punctuation gone
    assert "".join(vocab[i] for i in chars[1]) == "is 2 ok"
    feats, mask = torch.randn(2, 80, 120), torch.ones(2, 120, dtype=torch.long)
    labels = torch.tensor([[1, 2, 3], [4, 5, -100]])
    aux = collate_aux([0, 1], chars)
    assert aux.shape == (2, len(chars[0])) and (aux[1, len(chars[1]) :] == -100).all()
    out = model(feats, mask, labels=labels, aux_labels=aux)
    assert out.loss.item() == pytest.approx(
        (out.ctc_loss + out.commitment_loss + 0.5 * out.aux_ctc_loss).item(), rel=1e-5
    )
    out.loss.backward()
    assert model.aux_ctc_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs aux_labels"):
        model(feats, mask, labels=labels)
    with pytest.raises(ValueError, match="aux_labels contain ids"):
        model(feats, mask, labels=labels, aux_labels=torch.full((2, 3), len(vocab)))
    with pytest.raises(ValueError, match="aux_ctc_units"):
        SpeechTokenizerConfig(**{**TINY, "aux_ctc_units": "phones"})


def test_batched_encoding_equals_one_by_one():
    model = tiny_model()
    fe = build_feature_extractor(model.config)
    clips = waves(5)
    batched = encode_waveforms(model, fe, clips, batch_size=5)
    single = encode_waveforms(model, fe, clips, batch_size=1)
    assert batched == single
    assert [len(t) for t in batched] == [-(-(len(w) // 160) // 8) for w in clips]


def test_long_audio_is_split_at_token_boundaries():
    model = tiny_model(max_source_positions=40)  # 0.8 s windows = 10 tokens
    fe = build_feature_extractor(model.config)
    clip = waves(1, seed=3)[0]
    clip = np.concatenate([clip, clip, clip])
    (ids,) = encode_waveforms(model, fe, [clip])
    assert len(ids) == -(-(len(clip) // 160) // 8)


def test_length_buckets_sort_and_cap():
    batches = length_buckets([5, 1, 9, 3, 7], batch_size=2)
    assert batches == [[1, 3], [0, 4], [2]]
    assert all(len(b) == 1 for b in length_buckets([5, 5, 5], batch_size=8, max_batch_frames=6))
    feats, mask = collate_features([np.ones((80, 3)), np.ones((80, 5))])
    assert feats.shape == (2, 80, 5) and mask.sum(-1).tolist() == [3, 5] and feats[0, :, 3:].abs().sum() == 0


# ---------------------------------------------------------------- streaming


def test_block_causal_prefix_gives_identical_tokens():
    """With a causal stem and block-causal attention, a prefix ending on a block boundary encodes identically."""
    block = 8  # 50 Hz frames = 2 tokens
    model = tiny_model(causal_conv=True, causal_block_size=block)
    full = torch.randn(1, 80, 150)
    _, _, pooled_full, _ = model._encode_pre_quantizer(full, None)
    ids_full, _ = model.encode(full)
    for blocks in (1, 3, 5):
        prefix = full[..., : 2 * block * blocks]
        _, _, pooled, _ = model._encode_pre_quantizer(prefix, None)
        ids, lengths = model.encode(prefix)
        assert int(lengths) == blocks * block // 4
        torch.testing.assert_close(pooled[0], pooled_full[0, : pooled.shape[1]], rtol=1e-5, atol=1e-5)
        assert torch.equal(ids[0], ids_full[0, : ids.shape[1]])
    # the same prefix through a full-attention model does see the future (so the test above can fail)
    offline = tiny_model()
    _, _, a, _ = offline._encode_pre_quantizer(full, None)
    _, _, b, _ = offline._encode_pre_quantizer(full[..., :32], None)
    assert not torch.allclose(a[0, : b.shape[1]], b[0], atol=1e-4)


@pytest.mark.parametrize("window", [None, 6])
def test_streaming_encoder_block_by_block_equals_offline(window):
    model = tiny_model(causal_conv=True, causal_block_size=8, attention_window=window)
    feats = torch.randn(1, 80, 517)  # not a multiple of the block: the last block is partial
    offline, lengths = model.encode(feats)
    stream, streamed, start = model.streaming_encoder(), [], 0
    for size in [1, 7, 16, 33, 2, 100, 64, 300]:
        streamed += stream.push(feats[0, :, start : start + size])
        start += size
    streamed += stream.flush()
    assert streamed == offline[0].tolist() and len(streamed) == int(lengths[0])
    # a fresh stream after flush starts from scratch and gives the same again
    assert stream.push(feats[0]) + stream.flush() == streamed
    with pytest.raises(ValueError, match="causal_conv"):
        tiny_model().streaming_encoder()
    with pytest.raises(ValueError, match="features must be"):
        stream.push(torch.randn(64, 10))


def test_silence_and_shortest_audio_are_handled():
    model = tiny_model()
    fe = build_feature_extractor(model.config)
    silence, shortest = np.zeros(16000, dtype=np.float32), np.full(400, 0.01, dtype=np.float32)
    ids = encode_waveforms(model, fe, [silence, shortest])
    assert [len(t) for t in ids] == [13, 1]  # 1 s -> 13 tokens (12.5 Hz, rounded up); 25 ms -> one token
    assert all(0 <= t < model.config.codebook_size for row in ids for t in row)


def test_attention_window_limits_the_receptive_field():
    model = tiny_model(attention_window=4)  # 2 layers before the VQ: +-8 frames (+ the conv stem's 3)
    feats = torch.randn(1, 80, 200)
    far = feats.clone()
    far[..., 60:] += 5.0  # mel frame 60 = 50 Hz frame 30: more than 11 frames from frames 0..15
    a = model._encode_pre_quantizer(feats, None)[0]
    b = model._encode_pre_quantizer(far, None)[0]
    torch.testing.assert_close(a[:, :16], b[:, :16])
    assert not torch.allclose(a[:, 25:35], b[:, 25:35])
    full = tiny_model()
    assert not torch.allclose(
        full._encode_pre_quantizer(feats, None)[0][:, :16], full._encode_pre_quantizer(far, None)[0][:, :16]
    )


# ---------------------------------------------------------------- quantizer


def test_codebook_init_from_encoder_outputs_uses_many_codes_and_dead_codes_restart():
    model = tiny_model(codebook_size=16, restart_interval=1)
    vq = model.quantizer
    # encoder outputs = 16 clusters around a large shared offset (the common part that centring removes)
    centers = 5.0 + torch.randn(16, 32)
    data = centers.repeat_interleave(20, 0) + 0.05 * torch.randn(320, 32)
    vq.init_codebook(data, generator=torch.Generator().manual_seed(0))
    assert len(set(vq.nearest(vq.project(data)).tolist())) >= 12
    torch.testing.assert_close(vq.input_mean, data.mean(0))
    # starve code 0: its EMA usage is far below the uniform share -> it restarts at an encoder output
    vq.ema_count[0] = 1e-6
    before = vq.codebook[0].clone()
    restarted = vq._restart_dead_codes(vq.project(data))
    assert restarted >= 1 and not torch.equal(vq.codebook[0], before)


# ---------------------------------------------------------------- CTC (the vocabulary: test_tokenization_speech_tokenizer.py)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    model = tiny_model(asr_vocab_size=5)
    path = torch.tensor([[1, 1, 5, 1, 2, 2, 5, 5, 3, 4]])
    logits = torch.nn.functional.one_hot(path, 6).float()
    assert model.ctc_greedy_ids(logits, torch.tensor([10])) == [[1, 1, 2, 3, 4]]
    assert model.ctc_greedy_ids(logits, torch.tensor([4])) == [[1, 1]]


# ---------------------------------------------------------------- save / load


def test_position_tables_are_fixed_sinusoids_after_init_and_reload(tmp_path):
    # Regression: transformers skips `_init_weights` on a custom model's top module (it owns no parameters), so
    # tables filled from there stayed N(0, 0.02) noise and the encoder had no notion of position.
    from transformers.models.whisper.modeling_whisper import sinusoids

    model = tiny_model()
    model.save_pretrained(tmp_path)
    for m in (model, SpeechTokenizerModel.from_pretrained(tmp_path)):
        m.train()
        m(torch.randn(2, 80, 50), labels=torch.tensor([[1, 2], [3, -100]])).loss.backward()
        for table in (m.embed_positions, m.embed_token_positions):
            torch.testing.assert_close(table.weight.detach(), sinusoids(*table.weight.shape))
            assert table.weight.grad is None  # fixed, also after from_pretrained made the parameter trainable


def test_save_load_strict_round_trip(tmp_path):
    model = tiny_model(asr_vocab_size=len(tiny_bpe()))
    model.set_asr_vocabulary(tiny_bpe())
    model.quantizer.codebook.mul_(-1)  # a non-init codebook must survive the round trip (it is a buffer)
    model.save_pretrained(tmp_path)
    loaded = SpeechTokenizerModel.from_pretrained(tmp_path).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.asr_vocabulary == model.asr_vocabulary
    feats = torch.randn(2, 80, 77)
    assert torch.equal(model.encode(feats)[0], loaded.encode(feats)[0])


def test_fresh_process_trust_remote_code_gives_identical_tokens_and_transcripts(tmp_path):
    tok = tiny_bpe()
    model = tiny_model(asr_vocab_size=len(tok))
    model.set_asr_vocabulary(tok)
    fe = build_feature_extractor(model.config)
    model.save_pretrained(tmp_path / "tok")
    fe.save_pretrained(tmp_path / "tok")
    clips = waves(3, seed=7)
    np.savez(tmp_path / "clips.npz", *clips)
    expected = encode_waveforms(model, fe, clips)
    texts = model.transcribe_tokens(expected)
    assert any(texts)  # a random CTC head prints pieces: comparing transcripts below compares something
    assert "asr_vocab" not in json.loads((tmp_path / "tok" / "config.json").read_text())
    assert (tmp_path / "tok" / "asr_vocab.json").is_file()  # the vocabulary travels in its own file
    unit = Path(SpeechTokenizerModel.__module__.replace(".", "/")).parent  # save_pretrained copies the whole unit
    sources = {p.name for p in (Path(__file__).parents[1] / unit).glob("*.py")} - {"__init__.py"}
    assert "asr_speech_tokenizer.py" in sources <= {p.name for p in (tmp_path / "tok").glob("*.py")}
    script = textwrap.dedent(
        """
        import json
        import numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModel
        try:
            import modeling_speechtext  # noqa: F401
            raise SystemExit("package importable")
        except ImportError:
            pass
        model = AutoModel.from_pretrained("tok", trust_remote_code=True).eval()
        fe = AutoFeatureExtractor.from_pretrained("tok", trust_remote_code=True)
        clips = np.load("clips.npz")
        out = []
        for key in sorted(clips.files, key=lambda k: int(k.split("_")[1])):
            feats = fe(clips[key], sampling_rate=16000, return_tensors="pt")  # defaults: no 30 s padding
            ids, n = model.encode(feats["input_features"])
            out.append(ids[0, : int(n[0])].tolist())
        modules = [type(model).__module__, type(fe).__module__]
        print(json.dumps({"ids": out, "texts": model.transcribe_tokens(out), "modules": modules}))
        """
    )
    proc = run_without_package(script, tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ids"] == expected
    assert result["texts"] == texts
    assert all(m.startswith("transformers_modules") for m in result["modules"]), result["modules"]
    preprocessor = json.loads((tmp_path / "tok" / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_speech_tokenizer.SpeechTokenizerFeatureExtractor"
    }


# ---------------------------------------------------------------- bad inputs


def test_bad_features_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="mel bins"):
        model.encode(torch.randn(1, 64, 20))
    with pytest.raises(ValueError, match="input_features must be"):
        model.encode(torch.randn(80, 20))
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 80, 20), float("nan")))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.encode(torch.randn(2, 80, 20), torch.ones(2, 19))
    with pytest.raises(ValueError, match="no valid frame"):
        model.encode(torch.randn(2, 80, 20), torch.tensor([[1] * 20, [0] * 20]))
    with pytest.raises(ValueError, match="at most 400"):
        model.encode(torch.randn(1, 80, 802))
    model.set_asr_vocabulary(SpeechTokenizerAsrVocabulary(["a"] * 40))
    with pytest.raises(ValueError, match="outside 0..15"):
        model.transcribe_tokens([[3, 16]])
    with pytest.raises(ValueError, match="asr_vocab_size"):
        model(torch.randn(1, 80, 20), labels=torch.tensor([[40]]))


def test_bad_waveforms_raise_clear_errors():
    model = tiny_model()
    fe = build_feature_extractor(model.config)
    good = np.zeros(2000, dtype=np.float32)
    for bad, match in [
        (np.zeros((2, 2000), dtype=np.float32), r"waveforms\[1\] must be mono"),
        (np.zeros(2000, dtype=np.int16), "float audio"),
        (np.zeros(100, dtype=np.float32), "at least 400"),
        (np.full(2000, np.nan, dtype=np.float32), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            encode_waveforms(model, fe, [good, bad])
    with pytest.raises(ValueError, match="list of 1-D arrays"):
        encode_waveforms(model, fe, good)


# ---------------------------------------------------------------- paper sizes (meta device, no memory)


def test_paper_config_matches_whisper_large_v3_encoder_on_meta():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    dims = dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=128)
    cfg = SpeechTokenizerConfig(**dims, quantize_position=16, codebook_size=16384, asr_vocab_size=51866)
    with torch.device("meta"):
        ours = SpeechTokenizerModel(cfg)
        whisper = WhisperEncoder(WhisperConfig(**dims, max_source_positions=1500))
    n_ours = sum(p.numel() for p in ours.parameters())
    n_whisper = sum(p.numel() for p in whisper.parameters())
    assert n_whisper == 635_048_960 + 1500 * 1280  # whisper-large-v3 encoder + its fixed sinusoid positions
    extra = 375 * 1280 + 1280 * (51866 + 1) + (51866 + 1)  # token positions + CTC head
    assert n_ours - n_whisper == extra
    assert tuple(ours.quantizer.codebook.shape) == (16384, 1280)
    assert len(ours.layers) == 16 and len(ours.post_layers) == 16
    assert cfg.frame_rate == 12.5 and cfg.bitrate == pytest.approx(175.0)


def test_init_from_a_whisper_encoder_reproduces_its_hidden_states():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    dims = dict(d_model=32, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=64, max_source_positions=50)
    torch.manual_seed(1)
    whisper = WhisperEncoder(WhisperConfig(**dims)).eval()
    model = tiny_model(**dims, quantize_position=2)
    fresh = model.load_whisper_encoder_weights(whisper.state_dict())
    assert fresh and all(k.startswith(("quantizer", "ctc_head", "embed_token_positions")) for k in fresh)
    feats = torch.randn(2, 80, 100)  # Whisper's encoder only takes exactly 2 x max_source_positions frames
    with torch.no_grad():
        expected = whisper(feats, output_hidden_states=True).hidden_states[2]
        ours = model._encode_pre_quantizer(feats, None)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        tiny_model(d_model=64, max_source_positions=50).load_whisper_encoder_weights(whisper.state_dict())


@pytest.mark.parametrize("kernel,rate", [(8, 6.25), (4, 12.5), (2, 25.0), (1, 50.0)])
def test_pooling_kernel_sets_the_token_rate(kernel, rate):
    model = tiny_model(pooling_kernel_size=kernel, asr_vocab_size=40)
    fe = build_feature_extractor(model.config)
    (ids,) = encode_waveforms(model, fe, [np.full(32000, 0.01, dtype=np.float32)])  # 2 s
    assert model.config.frame_rate == rate and len(ids) == int(np.ceil(2 * rate))
    out = model(torch.randn(1, 80, 200), labels=torch.tensor([[1, 2]]))
    assert out.token_ids.shape[1] == int(np.ceil(100 / kernel)) and torch.isfinite(out.loss)


def test_feature_extractor_refuses_audio_at_another_rate():
    """transformers' own rate check must see the caller's rate: the extractor does not fill in its own."""
    from modeling_speechtext.models.speech_tokenizer.feature_extraction_speech_tokenizer import (
        SpeechTokenizerFeatureExtractor,
    )

    fe = SpeechTokenizerFeatureExtractor(feature_size=80, sampling_rate=16000)
    wave = np.zeros(8000, dtype=np.float32)
    with pytest.raises(ValueError, match="sampling rate"):
        fe(wave, sampling_rate=8000)
    feats = fe(wave, sampling_rate=16000, return_tensors="np")["input_features"]
    assert feats.shape == (1, 80, 50)  # its own length: no 30 s padding
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging as hf_logging

    with CaptureLogger(hf_logging.get_logger("transformers.models.whisper.feature_extraction_whisper")) as cap:
        fe(wave)  # no rate given: transformers warns (before the fix ours silently assumed 16 kHz)
    assert "sampling_rate" in cap.out

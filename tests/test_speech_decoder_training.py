"""The decoder recipe end to end on a synthetic run folder: train, save, evaluate, plot, resume, presets."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_speechtext.pipeline.presets import load_preset
from recipes import train_speech_decoder as recipe

VOICES = ["espeak:a", "flite:b"]


def _signal(seconds: float, f0: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * math.pi * np.cumsum(f0 + 30 * np.sin(2 * math.pi * 0.8 * t)) / 16000
    return (0.1 * sum(np.sin(k * phase) / k for k in range(1, 10))).astype(np.float32)


def _tiny_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["mary went to the kitchen", "john moved to the garden"] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """speech_corpus + speech_tokens + speech_tokenizer folders as the earlier stages write them (tiny, fake)."""
    from datasets import Audio, Dataset, DatasetDict

    from modeling_speechtext.generation.speech_tokenization import build_feature_extractor
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    bpe = _tiny_bpe()
    tok_config = SpeechTokenizerConfig(
        d_model=32, encoder_layers=3, quantize_position=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        codebook_size=16, codebook_dim=8, asr_vocab_size=len(bpe), max_source_positions=400,
    )  # fmt: skip
    tokenizer = SpeechTokenizerModel(tok_config)
    tokenizer.set_asr_vocabulary(bpe)
    tokenizer.save_pretrained(root / "speech_tokenizer")
    build_feature_extractor(tok_config).save_pretrained(root / "speech_tokenizer")

    rng = np.random.default_rng(0)
    corpus, tokens = {}, {}
    for split, n, voices in (("train", 12, VOICES), ("validation", 3, VOICES), ("test_unseen_voices", 2, ["x:c"])):
        rows = []
        for i in range(n):
            seconds = float(rng.uniform(0.9, 1.6))
            rows.append(
                {"id": f"{split}-{i}", "audio": {"array": _signal(seconds, 100 + 20 * i), "sampling_rate": 16000},
                 "text": "mary went to the kitchen", "voice": voices[i % len(voices)], "engine": "fake",
                 "duration": seconds}
            )  # fmt: skip
        corpus[split] = Dataset.from_list(rows).cast_column("audio", Audio(sampling_rate=16000))
        tokens[split] = Dataset.from_list(
            [
                {**{k: r[k] for k in ("id", "text", "voice", "engine", "duration")},
                 "speech_ids": rng.integers(0, 16, math.ceil(r["duration"] * 12.5)).tolist()}
                for r in reversed(rows)  # a different order: the recipe must join on id
            ]
        )  # fmt: skip
    DatasetDict(corpus).save_to_disk(str(root / "speech_corpus" / "dataset"))
    DatasetDict(tokens).save_to_disk(str(root / "speech_tokens" / "dataset"))
    return root


def _micro_config(**overrides):
    config = load_preset("micro")["speech_decoder"]
    return {**config, "max_steps": 4, "save_steps": 2, "eval_samples": 3, **overrides}


@pytest.fixture(scope="module")
def trained(run_dir):
    out = run_dir / "speech_decoder"
    return out, recipe.run_stage(_micro_config(), out, run_dir)


def test_stage_trains_saves_evaluates_and_plots(trained):
    from transformers import AutoModel

    out, metrics = trained
    json.dumps(metrics)  # JSON-serialisable, as the pipeline requires
    assert metrics["steps"] == 4 and metrics["voices"] == 2 and metrics["codebook_size"] == 16
    for key in ("mel_l1_validation", "mcd_validation", "mel_l1_test_unseen_voices", "wer_original_validation",
                "wer_resynthesis_validation", "wer_resynthesis_test_unseen_voices", "wer_vocoder_only_validation"):  # fmt: skip
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["stream_vs_offline_mel_max_abs_diff"] < 1e-3
    assert (out / "model.safetensors").is_file() and (out / "mels.png").stat().st_size > 10_000
    assert json.loads((out / "metrics.json").read_text()) == metrics
    card = (out / "README.md").read_text()  # the model card carries the measured numbers
    assert "library_name: transformers" in card and f"| {round(metrics['wer_resynthesis_validation'], 4)} |" in card
    assert not list(out.glob("checkpoint-*"))
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert model.config.voice_names == VOICES and model.config.default_voice in VOICES
    assert model.config.mel_std > 0.1  # statistics from the data, not the defaults
    assert model.decode([1, 2, 3, 4, 5]).shape[0] == 5 * 1280


def test_interrupted_run_resumes_from_its_checkpoint(run_dir, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    class CrashAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("simulated crash at step 3")

    class CrashingTrainer(recipe.DecoderTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(CrashAtStep3())

    out = tmp_path / "speech_decoder"
    monkeypatch.setattr(recipe, "DecoderTrainer", CrashingTrainer)
    with pytest.raises(RuntimeError, match="simulated crash"):
        recipe.run_stage(_micro_config(), out, run_dir)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    monkeypatch.undo()
    metrics = recipe.run_stage(_micro_config(eval_samples=1), out, run_dir)
    assert metrics["resumed_from"] == "checkpoint-2" and metrics["steps"] == 4
    # a crash after the last step (during evaluation) does not train again
    monkeypatch.setattr(recipe, "evaluate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("eval crash")))
    with pytest.raises(RuntimeError, match="eval crash"):
        recipe.run_stage(_micro_config(), tmp_path / "again", run_dir)
    monkeypatch.undo()
    metrics = recipe.run_stage(_micro_config(eval_samples=1), tmp_path / "again", run_dir)
    assert metrics["resumed_from"] == "checkpoint-4" and metrics["train_seconds"] == 0.0


def test_single_voice_training_and_regression_objective(run_dir, tmp_path):
    metrics = recipe.run_stage(
        _micro_config(voice_embedding=False, target_voice="flite:b", objective="regression", eval_samples=1),
        tmp_path / "d",
        run_dir,
    )
    assert metrics["voices"] == 1 and metrics["train_utterances"] == 6 and metrics["objective"] == "regression"


def test_token_consistency_loss_is_trained_and_reported(run_dir, tmp_path):
    metrics = recipe.run_stage(
        _micro_config(token_loss_weight=0.5, token_loss_bridge_samples=4, logging_steps=2, eval_samples=1),
        tmp_path / "d",
        run_dir,
    )
    assert metrics["token_loss_weight"] == 0.5
    assert 0.0 < metrics["token_loss_bridge_r2"] <= 1.0 and metrics["token_loss_bridge_frames"] > 81
    assert metrics["final_token_loss"] > 0 and 0.0 <= metrics["final_token_accuracy"] <= 1.0
    assert "final_token_loss" not in recipe.run_stage(_micro_config(eval_samples=1), tmp_path / "plain", run_dir)


def test_fine_tune_from_a_trained_decoder(run_dir, trained, tmp_path):
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    out, _ = trained
    start = SpeechDecoderModel.from_pretrained(out)
    metrics = recipe.run_stage(
        _micro_config(init_from=str(out), max_steps=1, warmup_steps=0, eval_samples=1, hidden_size=8),
        tmp_path / "ft",
        run_dir,
    )
    tuned = SpeechDecoderModel.from_pretrained(tmp_path / "ft")
    assert metrics["init_from"] == str(out) and metrics["steps"] == 1
    assert tuned.config.hidden_size == start.config.hidden_size  # the checkpoint's architecture, not the arguments
    assert tuned.config.mel_mean == start.config.mel_mean and tuned.config.voice_names == start.config.voice_names
    moved = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values())]
    assert any(moved)  # it trained from the checkpoint's weights
    with pytest.raises(ValueError, match="voice_embedding must match"):
        recipe.run_stage(_micro_config(init_from=str(out), voice_embedding=False), tmp_path / "ft2", run_dir)


def test_bad_configs_fail_clearly(run_dir, tmp_path):
    with pytest.raises(ValueError, match="target_voice 'nobody'"):
        recipe.run_stage(_micro_config(target_voice="nobody"), tmp_path / "a", run_dir)
    with pytest.raises(ValueError, match="hiden_size"):
        recipe.run_stage(_micro_config(hiden_size=3), tmp_path / "b", run_dir)
    with pytest.raises(FileNotFoundError, match="speech_tokens stage"):
        recipe.run_stage(_micro_config(), tmp_path / "c", tmp_path / "empty_run")


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse_and_build_on_meta(preset):
    """Every preset is a valid set of arguments; the paper one builds at its published-like size."""
    from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    config = {**load_preset(preset)["speech_decoder"], "output_dir": "unused", "use_cpu": True}
    data, model_args, training_args = recipe.make_parser().parse_dict(config)
    decoder_config = SpeechDecoderConfig(codebook_size=16384, **vars(model_args))
    with torch.device("meta"):
        model = SpeechDecoderModel(decoder_config)
    params = sum(p.numel() for p in model.parameters())
    if preset == "paper":
        assert (
            decoder_config.block_size == 10 and decoder_config.num_steps == 10 and decoder_config.cfg_strength == 0.7
        )
        assert params > 50e6
    assert training_args.max_steps > 0 and data.max_train_tokens % max(decoder_config.block_size, 1) == 0


def test_resynthesize_command(run_dir, trained, tmp_path, capsys):
    import soundfile as sf

    from modeling_speechtext.cli.main import main

    sf.write(str(tmp_path / "in.wav"), _signal(1.3, 110), 16000)
    args = ["resynthesize", "--tokenizer", str(run_dir / "speech_tokenizer"), "--decoder", str(trained[0])]
    assert main([*args, str(tmp_path / "in.wav"), str(tmp_path / "out.wav"), "--transcribe"]) == 0
    audio, rate = sf.read(str(tmp_path / "out.wav"))
    assert rate == 16000 and audio.shape[0] % 1280 == 0 and abs(audio.shape[0] - 1.3 * 16000) <= 1280
    assert "output says:" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "in.wav"), str(tmp_path / "streamed.wav"), "--stream"]) == 0
    assert "first audio after" in capsys.readouterr().out
    assert sf.read(str(tmp_path / "streamed.wav"))[0].shape == audio.shape
    # a decoder trained on another tokenizer's codebook is refused with one clear line
    from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    small = dict(hidden_size=32, encoder_layers=1, estimator_layers=1, num_attention_heads=2, intermediate_size=32)
    SpeechDecoderModel(SpeechDecoderConfig(codebook_size=32, **small)).save_pretrained(tmp_path / "other_decoder")
    args[-1] = str(tmp_path / "other_decoder")
    assert main([*args, str(tmp_path / "in.wav"), str(tmp_path / "x.wav")]) == 2
    assert "codebook_size=16 does not match this decoder's codebook_size=32" in capsys.readouterr().err
    assert main([*args[:-1], str(trained[0]), str(tmp_path / "missing.wav"), str(tmp_path / "x.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err


def test_push_to_hub_uploads_the_finished_folder(run_dir, tmp_path, monkeypatch):
    """`push_to_hub` is honoured with the card and metrics in the folder, checkpoints left out."""
    uploads = []

    def fake_upload(folder, repo_id, **kwargs):
        uploads.append((repo_id, sorted(p.name for p in Path(folder).iterdir())))
        return f"https://hub/{repo_id}/commit/1"

    monkeypatch.setattr(recipe, "upload_folder_to_hub", fake_upload)
    cfg = _micro_config(eval_samples=1, push_to_hub=True, hub_model_id="me/decoder")
    metrics = recipe.run_stage(cfg, tmp_path / "pushed", run_dir)
    assert metrics["hub_url"] == "https://hub/me/decoder/commit/1" and len(uploads) == 1
    repo_id, files = uploads[0]
    assert repo_id == "me/decoder" and {"README.md", "metrics.json", "model.safetensors"} <= set(files)
    assert not [f for f in files if f.startswith("checkpoint-")]


def test_cli_reads_yaml_with_overrides_and_rejects_unknown_keys(tmp_path, monkeypatch):
    """`--config` + flag overrides go through `TrlParser`; a YAML typo is a clear error, not a silent default."""
    seen = {}
    monkeypatch.setattr(recipe, "main", lambda data, model_args, args: seen.update(steps=args.max_steps,
                        hidden=model_args.hidden_size, cpu=args.use_cpu) or {})  # fmt: skip
    (tmp_path / "ok.yaml").write_text("max_steps: 3\nhidden_size: 16\n")
    recipe.cli(["--config", str(tmp_path / "ok.yaml"), "--max_steps", "5", "--output_dir", str(tmp_path / "o")])
    assert seen == {"steps": 5, "hidden": 16, "cpu": torch.cuda.is_available() is False}
    (tmp_path / "bad.yaml").write_text("max_steps: 3\nhiden_size: 16\n")
    with pytest.raises(ValueError, match="hiden_size"):
        recipe.cli(["--config", str(tmp_path / "bad.yaml"), "--output_dir", str(tmp_path / "o")])


def test_tokenizer_state_condition_trains_with_a_frozen_copy_of_the_tokenizer(run_dir, tmp_path):
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    metrics = recipe.run_stage(_micro_config(condition="both", eval_samples=1), tmp_path / "d", run_dir)
    assert metrics["steps"] == 4 and math.isfinite(metrics["final_train_loss"])
    decoder = SpeechDecoderModel.from_pretrained(tmp_path / "d")
    tokenizer, _ = load_speech_tokenizer(run_dir / "speech_tokenizer")
    copy, theirs = decoder.encoder.tokenizer_states.state_dict(), tokenizer.state_dict()
    assert torch.equal(copy["codebook"], theirs["quantizer.codebook"])
    for name in [k for k in copy if k.startswith("post_layers.")]:  # trained 4 steps, the copy never moved
        assert torch.equal(copy[name], theirs[name]), name
    decoder.check_speech_tokenizer(tokenizer)
    # the states the recipe precomputed on whole utterances are the ones the copy gives at inference
    items = recipe._mel_items(decoder, [{"speech_ids": [1, 2, 3, 4, 5, 6, 7], "audio_index": 0, "voice": "x"}],
                              _AudioStub(), [], "t")  # fmt: skip
    expected = decoder.encoder.tokenizer_states(torch.tensor([[1, 2, 3, 4, 5, 6, 7]]))[0]
    assert torch.allclose(items[0]["tokenizer_states"].float(), expected, atol=2e-2)


class _AudioStub:
    """One second of audio at 16 kHz, as the speech corpus's audio column gives it."""

    def __getitem__(self, index):
        import io

        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, _signal(1.0, 120.0), 16000, format="WAV")
        return {"id": "stub", "audio": {"bytes": buf.getvalue(), "path": None}}

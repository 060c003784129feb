"""The text-to-token recipe on a fake speech_tokens dataset: loss on speech only, save/load, TTS WER, resume."""

import json
from pathlib import Path

import numpy as np
import pytest
from t2t_fixtures import SENTENCES, tiny_t2t, tiny_text_tokenizer

from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer
from modeling_speechtext.vocab import add_speech_tokens
from recipes.train_text_to_token import choose_temperature, run_stage, tokenize_pairs, tokens_per_char_guard

K = 16


def _speech_tokens(root, voices=("v",)):
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(0)

    def split(n):
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
        ids = [rng.integers(0, K, size=len(t) // 3).astype(np.int32).tolist() for t in texts]
        return Dataset.from_dict(
            {
                "id": [str(i) for i in range(n)],
                "text": texts,
                "speech_ids": ids,
                "voice": [voices[i % len(voices)] for i in range(n)],
                "engine": ["e"] * n,
                "duration": [1.0] * n,
            }
        )

    DatasetDict(train=split(40), validation=split(8)).save_to_disk(root / "speech_tokens" / "dataset")
    tiny_text_tokenizer().save_pretrained(root / "text_tokenizer")


def _speech_tokenizer(root):
    import torch

    from modeling_speechtext.generation.speech_tokenization import build_feature_extractor
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    tok = tiny_text_tokenizer()
    torch.manual_seed(0)
    cfg = SpeechTokenizerConfig(
        d_model=32,
        encoder_layers=3,
        quantize_position=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        codebook_size=K,
        codebook_dim=8,
        asr_vocab_size=len(tok),
        max_source_positions=400,
    )
    model = SpeechTokenizerModel(cfg).eval()
    model.set_asr_vocabulary(tok)
    model.save_pretrained(root / "speech_tokenizer")
    build_feature_extractor(cfg).save_pretrained(root / "speech_tokenizer")


def test_tokenize_pairs_masks_the_prompt_and_drops_bad_rows():
    from datasets import Dataset

    tok = tiny_text_tokenizer()
    vocab = add_speech_tokens(None, tok, K)
    rows = Dataset.from_dict(
        {"text": ["Mary went home.", "", "Where is Mary?", "x"], "speech_ids": [[1, 2, 3], [4], [], [5] * 50]}
    )
    ds, dropped = tokenize_pairs(rows, tok, vocab, max_length=20)
    assert dropped == 3 and len(ds) == 1  # empty text, empty speech, too long
    ids, mask = ds[0]["input_ids"], ds[0]["completion_mask"]
    prompt = tok("Mary went home.<|begin_of_audio|>", add_special_tokens=False)["input_ids"]
    assert ids == prompt + [
        vocab.audio_offset + 1,
        vocab.audio_offset + 2,
        vocab.audio_offset + 3,
        vocab.end_of_audio_id,
    ]
    assert mask == [0] * len(prompt) + [1] * 4
    guard = tokens_per_char_guard(rows, margin=2.0)
    assert guard["max_tokens_per_char"] == pytest.approx(2.0 * guard["tokens_per_char_p999"], abs=1e-3)


def test_stage_trains_saves_evaluates_and_resumes(tmp_path):
    _speech_tokens(tmp_path)
    _speech_tokenizer(tmp_path)
    config = {
        "seed": 0,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "per_device_train_batch_size": 8,
        "max_steps": 2,
        "save_steps": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "tts_eval_samples": 4,
        "keep_checkpoints": True,
        "temperature": 0.9,
        "temperature_grid": [0.9, 1.3],
        "mbr_samples": 2,
        "runaway_retries": 2,
    }
    out = tmp_path / "text_to_token"
    m1 = run_stage(config, out, tmp_path)
    assert m1["steps"] == 2 and m1["resumed_from"] is None and m1["codebook_size"] == K
    assert m1["train_examples"] == 40 and np.isfinite(m1["eval_loss"])
    assert {"tts_wer", "real_token_wer", "tts_over_real", "tts_wer_greedy", "synthesis_tokens_per_second"} <= set(m1)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2 and (out / "loss_curve.png").is_file()
    card = (out / "README.md").read_text()  # ours, not TRL's generic chat-model card
    assert "TextToTokenSynthesizer" in card and f"| {m1['tts_wer']} |" in card and "[None]" not in card
    synth = TextToTokenSynthesizer.from_pretrained(out)
    assert m1["tuned_on_separate_sentences"] and "tune_tts_wer_mbr" in m1
    if m1["chosen_mbr"]:
        assert synth.config.mbr_samples == 2 and not synth.config.do_sample
    else:
        assert m1["chosen_temperature"] in (0.9, 1.3) and synth.config.temperature == m1["chosen_temperature"]
    assert synth.vocab.codebook_size == K and synth.config.runaway_retries == 2
    assert m1["runaway_fraction"] <= m1["runaway_fraction_before_retries"]
    assert synth.config.max_tokens_per_char == pytest.approx(m1["max_tokens_per_char"])
    assert all(0 <= t < K for ids in synth.synthesize(SENTENCES[:2]) for t in ids)
    # a longer run in the same folder resumes from the last checkpoint instead of starting over
    m2 = run_stage({**config, "max_steps": 3, "keep_checkpoints": False}, out, tmp_path)
    assert m2["resumed_from"] == "checkpoint-2" and m2["steps"] == 3
    assert not list(out.glob("checkpoint-*"))


@pytest.mark.parametrize(
    "scores, chosen",
    [
        ({0.0: 0.3, 0.8: 0.2, "mbr": 0.1}, "mbr"),
        ({0.0: 0.3, 0.8: 0.1, "mbr": 0.2}, 0.8),
        ({0.0: 0.1, "mbr": 0.1}, 0.0),
    ],
)
def test_choose_temperature_keeps_mbr_only_when_it_scores_best(monkeypatch, scores, chosen):
    monkeypatch.setattr("recipes.train_text_to_token._tune", lambda synth, transcribe, texts, candidates, seed: scores)
    synth = tiny_t2t(codebook_size=8)
    grid = [t for t in scores if t != "mbr"]
    m = choose_temperature(synth, None, ["a"], grid, 0, {"mbr_samples": 3, "mbr_temperature": 0.7})
    assert m["chosen_mbr"] == (chosen == "mbr") and m["tune_tts_wer_mbr"] == scores["mbr"]
    if chosen == "mbr":  # MBR is built around the greedy decode
        assert synth.config.mbr_samples == 3 and synth.config.mbr_temperature == 0.7 and not synth.config.do_sample
    else:  # ties go to plain decoding
        assert synth.config.mbr_samples == 0 and m["chosen_temperature"] == chosen
        assert synth.config.do_sample == (chosen > 0)


def test_voice_conditioned_stage_picks_a_voice_on_tuning_sentences(tmp_path):
    _speech_tokens(tmp_path, voices=("flite:rms", "espeak:en+f2"))
    _speech_tokenizer(tmp_path)
    config = {
        "seed": 0, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 128, "per_device_train_batch_size": 8, "max_steps": 1, "use_cpu": True,
        "bf16": False, "report_to": "none", "tts_eval_samples": 3, "voice_conditioning": True,
        "voice_tune_samples": 2,
    }  # fmt: skip
    out = tmp_path / "text_to_token"
    metrics = run_stage(config, out, tmp_path)
    assert set(metrics["tune_tts_wer_by_voice"]) == {"flite:rms", "espeak:en+f2"}
    best = min(metrics["tune_tts_wer_by_voice"].values())
    assert metrics["tune_tts_wer_by_voice"][metrics["chosen_voice"]] == best
    synth = TextToTokenSynthesizer.from_pretrained(out)
    assert synth.voices == ["espeak:en+f2", "flite:rms"] and synth.config.voice == metrics["chosen_voice"]
    assert metrics["tuned_on_separate_sentences"] is True
    assert all(0 <= t < K for ids in synth.synthesize(SENTENCES[:2]) for t in ids)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset, tmp_path):
    from modeling_speechtext.pipeline.presets import load_preset
    from recipes.train_text_to_token import _parser

    cfg = load_preset(preset)["text_to_token"]
    cfg.setdefault("use_cpu", True)  # paper is a GPU preset; here only its fields are checked
    args, training_args = _parser().parse_dict({**cfg, "output_dir": str(tmp_path)})
    assert training_args.seed == cfg["seed"] and args.hidden_size % args.num_attention_heads == 0
    assert not training_args.gradient_checkpointing or preset == "paper"


def test_micro_stages_through_the_pipeline(tmp_path):
    """text_to_token then interleaved, as `speechtext pipeline --preset micro` runs them, on fake upstream folders."""
    from datasets import Dataset, DatasetDict

    from modeling_speechtext.pipeline.runner import run_pipeline

    _speech_tokens(tmp_path)
    _speech_tokenizer(tmp_path)
    docs = ["\n".join(SENTENCES[i % 6 :] + SENTENCES[: i % 6]) for i in range(20)]
    DatasetDict(
        train=Dataset.from_dict({"id": [f"s{i}" for i in range(20)], "text": docs, "source": ["babi"] * 20})
    ).save_to_disk(tmp_path / "text_corpus" / "documents")
    report = run_pipeline("micro", tmp_path, stages=["text_to_token", "interleaved"])
    t2t, inter = report["stages"]
    assert t2t["status"] == inter["status"] == "done"
    assert inter["metrics"]["documents"] == 12  # micro: max_documents 12
    assert 0 < inter["metrics"]["eta_achieved_words"] < 1
    assert len(list((tmp_path / "interleaved" / "data").glob("train-*-of-00002.parquet"))) == 2
    again = run_pipeline("micro", tmp_path, stages=["text_to_token", "interleaved"])
    assert [s["status"] for s in again["stages"]] == ["skipped", "skipped"]


def test_inference_model_drops_the_autocast_wrapper_of_bf16_training(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from recipes.train_text_to_token import inference_model

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    args = TrainingArguments(
        output_dir=str(tmp_path), bf16=True, use_cpu=True, max_steps=1, per_device_train_batch_size=2,
        report_to="none", save_strategy="no",
    )  # fmt: skip
    data = Dataset.from_dict({"input_ids": [[1, 5, 9, 3]] * 4, "labels": [[1, 5, 9, 3]] * 4})
    trainer = Trainer(model=LlamaForCausalLM(config), args=args, train_dataset=data)
    trainer.train()
    x = torch.tensor([[1, 5, 9, 3, 7]])
    assert hasattr(trainer.model, "_original_forward")  # the premise: the bf16 autocast wrapper outlives training
    model = inference_model(trainer)
    reference = LlamaForCausalLM(config).eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x).logits, reference(x).logits)  # float32 compute, as the saved model runs


def test_stage_starts_from_a_pretrained_model_and_rejects_the_wrong_kind(tmp_path):
    """`model_name_or_path`: train a saved model further (its tokenizer, its size), not a fresh one."""
    import torch

    from modeling_speechtext.generation.text_to_token import load_text_to_token_model

    _speech_tokens(tmp_path)
    _speech_tokenizer(tmp_path)
    start = tmp_path / "start"
    tiny_t2t(codebook_size=K, seed=3).save_pretrained(start)
    initial = TextToTokenSynthesizer.from_pretrained(start).model
    before = {k: v.clone() for k, v in initial.state_dict().items()}
    config = {
        "model_name_or_path": str(start), "hidden_size": 48,  # ignored: the checkpoint's size wins
        "seed": 0, "per_device_train_batch_size": 8, "max_steps": 1, "learning_rate": 0.0, "use_cpu": True,
        "bf16": False, "report_to": "none", "tts_eval_samples": 0,
    }  # fmt: skip
    out = tmp_path / "text_to_token"
    metrics = run_stage(config, out, tmp_path)
    assert metrics["init_from"] == str(start) and metrics["params"] == initial.num_parameters()
    after = TextToTokenSynthesizer.from_pretrained(out).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # learning rate 0: the loaded weights, unchanged
    with pytest.raises(ValueError, match="speech tokens"):  # a different codebook than the checkpoint's
        load_text_to_token_model(start, 2 * K)
    with pytest.raises(ValueError, match="not a causal LM"):
        load_text_to_token_model(tmp_path / "speech_tokenizer", K, tiny_text_tokenizer())


def test_a_plain_text_lm_gets_the_speech_vocabulary_and_a_pad_token(tmp_path):
    """A pretrained text LM (no speech tokens, no pad token, as Llama-family checkpoints ship) becomes a
    text-to-token model: speech rows added, padding on eos, generation ending at <|end_of_audio|>."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling_speechtext.generation.text_to_token import load_text_to_token_model

    tok = tiny_text_tokenizer()
    tok.pad_token = None
    lm = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    )  # fmt: skip
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    model, tokenizer, vocab = load_text_to_token_model(tmp_path / "lm", K)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer) == len(tok) + K + 2
    assert model.generation_config.eos_token_id == vocab.end_of_audio_id
    synth = TextToTokenSynthesizer(model, tokenizer)
    assert all(0 <= t < K for ids in synth.synthesize(SENTENCES[:2], max_tokens_per_char=0.2) for t in ids)


@pytest.mark.parametrize("completion_only_loss", [None, False])
def test_user_training_settings_reach_the_trainer(tmp_path, monkeypatch, completion_only_loss):
    """`completion_only_loss` set by the user is kept (None -> the recipe's default, loss on the speech only)."""
    import trl

    _speech_tokens(tmp_path)
    _speech_tokenizer(tmp_path)
    seen = {}

    class Stop(Exception):
        pass

    def capture(*args, **kwargs):
        seen["args"] = kwargs["args"]
        raise Stop

    monkeypatch.setattr(trl, "SFTTrainer", capture)
    config = {
        "seed": 0, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 128, "max_length": 4096, "max_steps": 1, "use_cpu": True, "bf16": False,
        "report_to": "none", "tts_eval_samples": 0,
    }  # fmt: skip
    if completion_only_loss is not None:
        config["completion_only_loss"] = completion_only_loss
    with pytest.raises(Stop):
        run_stage(config, tmp_path / "text_to_token", tmp_path)
    assert seen["args"].completion_only_loss is (True if completion_only_loss is None else False)
    assert seen["args"].max_length == 128  # clamped to the model's positions, with a warning


def test_push_to_hub_uploads_the_finished_folder(tmp_path, monkeypatch):
    """`push_to_hub` is honoured: the final folder (weights, card, metrics; no checkpoints) goes up, once, after
    the recipe has written it; the Trainer's own push (before the card exists) is off."""
    import recipes.train_text_to_token as recipe

    _speech_tokens(tmp_path)
    _speech_tokenizer(tmp_path)
    uploads = []

    def fake_upload(folder, repo_id, **kwargs):
        uploads.append((repo_id, kwargs, sorted(p.name for p in Path(folder).iterdir())))
        return f"https://hub/{repo_id}/commit/1"

    monkeypatch.setattr(recipe, "upload_folder_to_hub", fake_upload)
    config = {
        "seed": 0, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 128, "max_steps": 1, "save_steps": 1, "use_cpu": True, "bf16": False,
        "report_to": "none", "tts_eval_samples": 0, "push_to_hub": True, "hub_model_id": "me/t2t",
    }  # fmt: skip
    metrics = run_stage(config, tmp_path / "text_to_token", tmp_path)
    assert metrics["hub_url"] == "https://hub/me/t2t/commit/1" and len(uploads) == 1
    repo_id, kwargs, files = uploads[0]
    assert repo_id == "me/t2t" and kwargs["private"] is False
    assert {"README.md", "metrics.json", "model.safetensors", "config.json"} <= set(files)
    assert not [f for f in files if f.startswith("checkpoint-")]
    with pytest.raises(ValueError, match="hub_model_id"):
        run_stage({**config, "hub_model_id": None}, tmp_path / "other", tmp_path)

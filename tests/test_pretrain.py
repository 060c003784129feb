"""Speech-text pretraining: the base LM extended with speech tokens, trained on the mixture, saved as a plain LM."""

import json

import pytest
from mixture_fixtures import add_base_lm, make_mixture_run

K = 16
MIXTURE = {"parts": {"text": {"share": 0.3}, "interleaved": {"share": 0.3}, "speech": {"share": 0.1},
                     "asr": {"share": 0.15}, "tts": {"share": 0.15}}}  # fmt: skip
TRAIN = {"max_length": 64, "per_device_train_batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1,
         "eval_strategy": "no", "report_to": "none", "eval_examples_per_part": 1, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return add_base_lm(make_mixture_run(tmp_path_factory.mktemp("run"), K), K)


def test_pretrain_saves_an_extended_plain_lm_and_resumes(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.vocab import SpeechVocab
    from recipes.pretrain import run_stage

    out = run / "pretrain"
    first = run_stage({"mixture": MIXTURE, **TRAIN, "max_steps": 2, "save_steps": 2, "keep_checkpoints": True},
                      out, run)  # fmt: skip
    assert first["steps"] == 2 and (out / "checkpoint-2").is_dir()
    second = run_stage({"mixture": MIXTURE, **TRAIN, "max_steps": 6, "save_steps": 100}, out, run)
    assert second["resumed_from"] == "checkpoint-2" and second["steps"] == 6
    assert not list(out.glob("checkpoint-*")) and (out / "loss_curves.png").stat().st_size > 0
    assert set(second["eval_loss_by_part"]) <= set(MIXTURE["parts"]) and "text" in second["eval_loss_by_part"]
    assert second["train_tokens_seen"] > first["train_tokens_seen"] > 0
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    vocab = SpeechVocab.from_tokenizer(tok)
    assert vocab.codebook_size == K and model.get_input_embeddings().weight.shape[0] >= vocab.vocab_size_needed
    assert "auto_map" not in json.loads((out / "config.json").read_text())


def test_loss_covers_the_right_side(run):
    from datasets import Dataset

    from recipes.pretrain import load_extended_lm, render

    _, tok, vocab = load_extended_lm(str(run / "base_lm"), K)
    rows = Dataset.from_list([
        {"part": "asr", "id": "a", "segments": [
            {"modality": "speech", "text": "", "speech_ids": [1, 2], "loss": False},
            {"modality": "text", "text": " Mary", "speech_ids": [], "loss": True}]},
        {"part": "none", "id": "b", "segments": [
            {"modality": "text", "text": "x", "speech_ids": [], "loss": False}]},
    ])  # fmt: skip
    out = render(rows, tok, vocab)
    assert out["part"] == ["asr"]  # a row with no loss token teaches nothing and is dropped (eos follows its side)
    ids, mask = out["input_ids"][0], out["completion_mask"][0]
    assert [i for i, m in zip(ids, mask) if m] == [*tok(" Mary", add_special_tokens=False)["input_ids"],
                                                    tok.eos_token_id]  # fmt: skip
    assert all(vocab.is_speech_token(i) or i in (vocab.begin_of_audio_id, vocab.end_of_audio_id)
               for i, m in zip(ids, mask) if not m)  # fmt: skip


def test_bad_inputs(run, tmp_path):
    from transformers import AutoTokenizer

    from modeling_speechtext.vocab import add_speech_tokens
    from recipes.pretrain import run_stage

    with pytest.raises(ValueError, match="no mixture"):
        run_stage({**TRAIN, "max_steps": 1}, tmp_path / "a", run)
    with pytest.raises(ValueError, match="every share is 0"):
        run_stage({"mixture": {"parts": {"text": {"share": 0}}}, **TRAIN, "max_steps": 1}, tmp_path / "b", run)
    # a base LM whose tokenizer already holds speech tokens of another codebook size
    other = tmp_path / "other_lm"
    tok = AutoTokenizer.from_pretrained(run / "base_lm")
    add_speech_tokens(None, tok, K * 2)
    tok.save_pretrained(other)
    for f in ("config.json", "model.safetensors"):
        (other / f).write_bytes((run / "base_lm" / f).read_bytes())
    with pytest.raises(ValueError, match="does not match codebook_size=16"):
        run_stage({"mixture": MIXTURE, **TRAIN, "max_steps": 1, "base_lm": str(other)}, tmp_path / "c", run)
    with pytest.raises(FileNotFoundError, match="speech tokenizer"):
        run_stage(
            {"mixture": MIXTURE, **TRAIN, "max_steps": 1, "speech_tokenizer": str(tmp_path)}, tmp_path / "d", run
        )


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset, tmp_path):
    from modeling_speechtext.data.mixture import MixtureConfig
    from modeling_speechtext.pipeline.presets import load_preset
    from recipes.pretrain import _parser

    cfg = load_preset(preset)["pretrain"]
    args, training_args = _parser().parse_dict({**cfg, "output_dir": str(tmp_path), "use_cpu": True})
    mixture = MixtureConfig.from_dict(args.mixture)
    assert set(mixture.parts) == {"text", "interleaved", "speech", "asr", "tts"}
    assert training_args.packing and training_args.completion_only_loss

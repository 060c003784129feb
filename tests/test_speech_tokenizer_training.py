"""The speech tokenizer recipe, the speech_tokens stage and `speechtext transcribe`, on a synthetic toy corpus.

The corpus is made of "words" that are distinct two-tone chords (no TTS engine needed, deterministic), so a
tiny model learns it in seconds and codebook usage after a short run is a real signal, not noise.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_speechtext.pipeline.presets import load_preset

WORDS = ["Mary", "John", "went", "to", "the", "kitchen", "garden", "office"]
SR = 16000

MICRO = dict(
    d_model=32,
    encoder_layers=2,
    quantize_position=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    codebook_size=32,
    codebook_dim=8,
    aux_ctc_weight=0.3,
    max_steps=250,
    learning_rate=0.003,
    warmup_steps=5,
    quantizer_warmup_steps=100,  # CTC leaves its blank plateau at ~100 steps on this toy corpus
    quantizer_start_loss=1.5,
    codebook_init_batches=4,
    kmeans_iters=5,
    restart_interval=20,
    max_batch_frames=3000,
    logging_steps=25,
    eval_steps=1000,
    save_steps=1000,
    bf16=False,
    num_threads=1,
    seed=0,
)
SHORT = {**MICRO, "max_steps": 24, "quantizer_warmup_steps": 8, "quantizer_start_loss": None, "save_steps": 8}


def _say(words: list[str], rng, pitch: float) -> np.ndarray:
    pieces = []
    for w in words:
        i = WORDS.index(w)
        t = np.arange(int(SR * rng.uniform(0.2, 0.28))) / SR
        f1, f2 = 300 + 90 * i, 1200 + 170 * (7 - i)
        tone = np.sin(2 * np.pi * f1 * pitch * t) + 0.5 * np.sin(2 * np.pi * f2 * pitch * t)
        pieces += [0.3 * tone * np.hanning(len(t)), np.zeros(int(SR * 0.05))]
    audio = np.concatenate([np.zeros(800), *pieces])
    return (audio + 0.003 * rng.standard_normal(len(audio))).astype(np.float32)


def make_corpus(root: Path, seed: int = 0) -> Path:
    """`root/speech_corpus/dataset` + `root/text_tokenizer`, in the formats of docs/STAGES.md."""
    from datasets import Audio, Dataset, DatasetDict, Features, Value

    from dataset_builders.text_tokenizer import train_text_tokenizer

    rng = np.random.default_rng(seed)
    feats = Features(
        {
            "id": Value("string"),
            "audio": Audio(sampling_rate=SR),
            "text": Value("string"),
            "voice": Value("string"),
            "engine": Value("string"),
            "duration": Value("float32"),
        }
    )

    def split(name, n, pitches):
        rows = []
        for k in range(n):
            words = list(rng.choice(WORDS, size=int(rng.integers(2, 5))))
            voice = k % len(pitches)
            audio = _say(words, rng, pitches[voice])
            text = " ".join(words) + "."
            rows.append(
                {
                    "id": f"{name}-{k}",
                    "audio": {"array": audio, "sampling_rate": SR},
                    "text": text,
                    "voice": f"synth:{voice}",
                    "engine": "synth",
                    "duration": len(audio) / SR,
                }
            )
        return Dataset.from_list(rows, features=feats)

    dd = DatasetDict(
        {
            "train": split("train", 96, [0.95, 1.0, 1.05]),
            "validation": split("validation", 16, [0.95, 1.0, 1.05]),
            "test_unseen_voices": split("test", 12, [1.1]),
        }
    )
    dd.save_to_disk(str(root / "speech_corpus" / "dataset"))
    texts = [" ".join(WORDS)] * 20 + list(dd["train"]["text"])
    train_text_tokenizer(texts, vocab_size=300, output_dir=root / "text_tokenizer", min_frequency=1)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def trained(run_dir):
    from recipes.train_speech_tokenizer import run_stage

    out = run_dir / "speech_tokenizer"
    metrics = run_stage(dict(MICRO), out, run_dir)
    return out, metrics


def test_training_learns_and_codebook_does_not_collapse(trained):
    out, metrics = trained
    assert metrics["steps"] == MICRO["max_steps"]
    assert MICRO["quantizer_warmup_steps"] <= metrics["quantizer_start_step"] <= 2 * MICRO["quantizer_warmup_steps"]
    # the known trap: a collapsed codebook uses 1-4 codes; k-means init from encoder outputs + restarts do not
    assert metrics["train_codebook_codes_used"] >= 12, metrics
    assert metrics["train_codebook_perplexity"] >= 6, metrics
    assert metrics["validation_wer"] < 0.9, metrics
    # per-voice breakdown: one entry per voice of the split, each a rate
    by_voice = metrics["validation_wer_by_voice"]
    assert len(by_voice) > 1 and all(v.startswith("synth:") for v in by_voice), by_voice
    assert all(0 <= w for w in by_voice.values())
    log = json.loads((out / "training_log.json").read_text())
    assert log["history"][-1]["ctc"] < 0.5 * log["history"][0]["ctc"]
    for name in ("metrics.json", "loss_curves.png", "codebook_usage.png", "model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    assert metrics["frame_rate"] == 12.5 and metrics["bitrate"] == pytest.approx(12.5 * 5)


def test_trained_folder_is_self_contained(trained, run_dir):
    from transformers import AutoTokenizer

    from modeling_speechtext.generation.speech_tokenization import encode_waveforms, load_speech_tokenizer

    out, metrics = trained
    card = (out / "README.md").read_text()  # the model card carries the measured numbers
    assert "trust_remote_code=True" in card and f"| {round(metrics['validation_wer'], 4)} |" in card
    model, fe = load_speech_tokenizer(out)
    assert AutoTokenizer.from_pretrained(str(out)).convert_ids_to_tokens(0) == "<|endoftext|>"
    clip = _say(["Mary", "went", "to", "the", "kitchen"], np.random.default_rng(5), 1.0)
    (ids,) = encode_waveforms(model, fe, [clip])
    assert len(ids) == -(-(len(clip) // 160) // 8)
    # a fresh process in which this package cannot be imported (remote code only) reads the same text from the same tokens
    import json
    import subprocess
    import sys

    script = ("import json, sys; sys.modules['modeling_speechtext'] = None; from transformers import AutoModel; "
              f"m = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True); "
              f"print(json.dumps(m.transcribe_tokens([{ids!r}])))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(out.parent),
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == model.transcribe_tokens([ids])


def test_resume_after_a_crash_matches_an_uninterrupted_run(run_dir, tmp_path, monkeypatch):
    import recipes.train_speech_tokenizer as recipe
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    # with feature augmentation on: its random draws must also continue exactly where they stopped
    cfg = dict(SHORT, mel_warp=0.1, freq_masks=1, freq_mask_width=8, time_masks=1, time_mask_width=10)
    recipe.run_stage(dict(cfg), tmp_path / "straight", run_dir)

    original = recipe.save_checkpoint

    def save_then_crash(model, optimizer, scheduler, state, output_dir, limit):
        original(model, optimizer, scheduler, state, output_dir, limit)
        if state["step"] == 16:
            raise KeyboardInterrupt("simulated crash right after the step-16 checkpoint")

    monkeypatch.setattr(recipe, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        recipe.run_stage(dict(cfg), tmp_path / "resumed", run_dir)
    assert recipe.last_checkpoint(tmp_path / "resumed").name == "checkpoint-16"
    monkeypatch.undo()
    resumed = recipe.run_stage(dict(cfg), tmp_path / "resumed", run_dir)
    assert resumed["steps"] == 24
    # same data order, optimizer, EMA codebook and RNG after the restart: the very same model
    a, _ = load_speech_tokenizer(tmp_path / "straight")
    b, _ = load_speech_tokenizer(tmp_path / "resumed")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=1e-5, atol=1e-6, msg=key)


def test_config_errors_are_clear(run_dir, tmp_path):
    from recipes.train_speech_tokenizer import run_stage

    with pytest.raises(ValueError, match="unknown key"):
        run_stage({**MICRO, "max_stepz": 3}, tmp_path / "a", run_dir)
    with pytest.raises(FileNotFoundError, match="speech corpus not found"):
        run_stage(dict(MICRO), tmp_path / "a", tmp_path)
    with pytest.raises(ValueError, match="quantize_position"):
        run_stage({**MICRO, "quantize_position": 5}, tmp_path / "a", run_dir)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset):
    from recipes.train_speech_tokenizer import parse_config

    cfg = load_preset(preset)
    script, model_args, args = parse_config(cfg["speech_tokenizer"])
    assert args.max_steps > 0 and model_args.codebook_size >= 64
    assert set(cfg["speech_tokens"]) <= {"batch_size", "max_batch_frames", "chunk_clips", "seed"}


def test_paper_preset_builds_on_meta_with_published_sizes():
    from dataclasses import asdict

    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel
    from recipes.train_speech_tokenizer import parse_config

    _, model_args, _ = parse_config(load_preset("paper")["speech_tokenizer"])
    fields_ = {k: v for k, v in asdict(model_args).items() if k != "init_from_whisper"}
    cfg = SpeechTokenizerConfig(**fields_, asr_vocab_size=151_552)  # GLM-4 text vocabulary
    with torch.device("meta"):
        model = SpeechTokenizerModel(cfg)
    encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("ctc_head", "embed_token")))
    assert encoder == 635_048_960 + 1500 * 1280  # whisper-large-v3's encoder, exactly
    assert tuple(model.quantizer.codebook.shape) == (16384, 1280)
    assert cfg.frame_rate == 12.5 and cfg.samples_per_token == 1280 and cfg.bitrate == pytest.approx(175.0)
    assert cfg.causal_conv and cfg.causal_block_size == 200 and len(model.layers) == 16


# ---------------------------------------------------------------- speech_tokens stage


def test_speech_tokens_stage(trained, run_dir, tmp_path):
    from datasets import load_from_disk

    from dataset_builders.speech_tokens import run_stage

    out = tmp_path / "speech_tokens"
    metrics = run_stage({"batch_size": 8, "chunk_clips": 40, "seed": 0}, out, run_dir)
    dd = load_from_disk(str(out / "dataset"))
    assert list(dd) == ["train", "validation", "test_unseen_voices"]
    assert dd["train"].column_names == ["id", "text", "voice", "engine", "duration", "speech_ids"]
    assert dd["train"].features["speech_ids"].feature.dtype == "int32"
    corpus = load_from_disk(str(run_dir / "speech_corpus" / "dataset"))
    assert dd["validation"]["id"] == corpus["validation"]["id"]
    for row in dd["validation"]:
        assert abs(len(row["speech_ids"]) - row["duration"] * 12.5) <= 1.5
        assert all(0 <= t < 32 for t in row["speech_ids"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["train"]["tokens_per_second"] == pytest.approx(12.5, abs=0.6)
    assert metrics["train_codebook_usage"] == pytest.approx(stats["splits"]["train"]["codebook_usage"], abs=1e-3)
    assert stats["splits"]["train"]["codebook_usage"] > 0.3
    assert not (out / "parts").exists()
    with pytest.raises(ValueError, match="unknown key"):
        run_stage({"batchsize": 8}, out, run_dir)


# ---------------------------------------------------------------- speechtext transcribe


def test_transcribe_command_with_manifest(trained, tmp_path, capsys):
    import soundfile as sf

    from modeling_speechtext.cli.main import main

    out, _ = trained
    rng = np.random.default_rng(9)
    lines = []
    for k, words in enumerate([["Mary", "went", "to", "the", "garden"], ["John", "went", "to", "the", "office"]]):
        sf.write(tmp_path / f"a{k}.wav", _say(words, rng, 1.0), SR)
        lines.append(json.dumps({"audio": f"a{k}.wav", "text": " ".join(words)}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    code = main(["transcribe", "--tokenizer", str(out), "--manifest", str(tmp_path / "m.jsonl"),
                 "--output", str(tmp_path / "preds.jsonl")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "WER" in printed and "CER" in printed and "codebook usage" in printed and "bitrate" in printed
    preds = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [p["audio"] for p in preds] == ["a0.wav", "a1.wav"] and all("hyp" in p and p["tokens"] for p in preds)
    # plain files too
    assert main(["transcribe", "--tokenizer", str(out), str(tmp_path / "a0.wav")]) == 0
    # bad manifest: a clear one-line error (exit code 2), naming the line
    (tmp_path / "bad.jsonl").write_text('{"text": "no audio"}\n')
    assert main(["transcribe", "--tokenizer", str(out), "--manifest", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_a_half_written_checkpoint_is_ignored_not_parsed(tmp_path):
    """A crash inside `save_checkpoint` leaves `checkpoint-N.tmp`; the next run resumes from the last whole one."""
    from recipes.train_speech_tokenizer import last_checkpoint

    for name, complete in [("checkpoint-8", True), ("checkpoint-16", True), ("checkpoint-24.tmp", True),
                           ("checkpoint-32", False)]:  # fmt: skip
        folder = tmp_path / "checkpoints" / name
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-16"  # before the fix: ValueError int("24.tmp")


def launch_two_cpu_ranks(args: list[str], cwd: Path, timeout: int = 120):
    """`accelerate launch` with recipes/accelerate/cpu_ddp.yaml: 2 torchrun processes on CPU (gloo).

    `--cpu --num_processes 2` (or a MULTI_CPU config) would start ONE process without mpirun: a test meant for two
    ranks would pass without ever having two (measured with accelerate 1.15).
    """
    import os
    import subprocess
    import sys

    accelerate = Path(sys.executable).with_name("accelerate")
    config = cwd / "recipes" / "accelerate" / "cpu_ddp.yaml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(accelerate), "launch", "--config_file", str(config), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_agree_on_quantizer_start_and_stop(run_dir, tmp_path):
    """Two ranks (gloo) switch the quantizer on at the same step and stop together: rank 0 decides for both."""
    import re

    cfg = {**SHORT, "max_steps": 3, "quantizer_warmup_steps": 1, "quantizer_start_loss": 1e9, "save_steps": 3,
           "logging_steps": 1, "max_train_clips": 24, "max_batch_size": 6, "max_eval_clips": 4}  # fmt: skip
    flags = [x for k, v in cfg.items() for x in (f"--{k}", str(v))]
    root = Path(__file__).resolve().parent.parent
    proc = launch_two_cpu_ranks(["-m", "recipes.train_speech_tokenizer", "--run_dir", str(run_dir),
                                 "--output_dir", str(tmp_path / "out"), *flags], root)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    starts = dict(re.findall(r"\[rank (\d)\] step (\d+): codebook initialised", proc.stderr))
    assert set(starts) == {"0", "1"} and len(set(starts.values())) == 1, starts  # both ranks, one step
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["quantizer_start_step"] == int(starts["0"])


def test_more_ranks_than_batches_is_a_clear_error(run_dir, tmp_path):
    """One batch per epoch cannot feed two ranks: before, rank 1 spun over empty epochs while rank 0 waited."""
    cfg = {**SHORT, "max_steps": 2, "max_train_clips": 8, "max_eval_clips": 4}
    flags = [x for k, v in cfg.items() for x in (f"--{k}", str(v))]
    root = Path(__file__).resolve().parent.parent
    proc = launch_two_cpu_ranks(["-m", "recipes.train_speech_tokenizer", "--run_dir", str(run_dir),
                                 "--output_dir", str(tmp_path / "out"), *flags], root, timeout=90)  # fmt: skip
    assert proc.returncode != 0 and "1 batch(es) per epoch cannot feed 2 processes" in proc.stderr

"""One end-to-end run of `speechtext pipeline --preset micro`: the stages tested together, through the CLI.

Marked slow; it still runs in CI (micro is seconds per stage). A second run must skip every stage.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from modeling_speechtext.paths import shared_data_dir
from modeling_speechtext.pipeline.presets import load_preset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shared_data_dir() is None, reason="needs the offline data (../shared/data)"),
]


def _run(out):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [
        sys.executable,
        "-m",
        "modeling_speechtext.cli.main",
        "pipeline",
        "--preset",
        "micro",
        "--output_dir",
        str(out),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.perf_counter() - start


def test_micro_pipeline_end_to_end(tmp_path):
    out = tmp_path / "micro"
    stages = load_preset("micro")["pipeline"]["stages"]
    _run(out)
    report = json.loads((out / "pipeline.json").read_text())
    assert [e["stage"] for e in report["stages"]] == stages
    assert all(e["status"] == "done" for e in report["stages"]), report
    for stage in stages:
        marker = json.loads((out / stage / "stage.json").read_text())
        assert marker["metrics"], f"stage {stage} reported no numbers"
    # the base LM is a stock causal LM over the text tokenizer's vocabulary
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(out / "base_lm")
    assert base.config.vocab_size == len(AutoTokenizer.from_pretrained(out / "text_tokenizer"))

    # the pretrained LM extends it with the speech tokens; the eval stage scored it in every modality and voice set
    from modeling_speechtext.vocab import SpeechVocab

    lm_tok = AutoTokenizer.from_pretrained(out / "pretrain")
    assert SpeechVocab.from_tokenizer(lm_tok).codebook_size == json.loads(
        (out / "speech_tokenizer" / "config.json").read_text())["codebook_size"]  # fmt: skip
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    for vset in ("seen_voices", "unseen_voices"):
        per = metrics["spoken_qa"][vset]
        assert set(per) == {"T->T", "S->T", "S->S", "T->S"}
        for task, r in per["S->T"].items():
            assert 0 <= r["ranked"] <= 1 and r["chance"] == pytest.approx(
                1 / len(metrics_answers(out)[task]), abs=1e-4
            )
        assert metrics["cloze"][vset]["S->S"]["context_free_accuracy"] == 0.5
    assert set(metrics["lm_asr_tts"]) == {"validation", "test_unseen_voices"}
    assert "S->T" in (out / "eval" / "report.md").read_text() and (out / "eval" / "qa_accuracy.png").stat().st_size
    assert "speechtext-eval" in (out / "pretrain" / "README.md").read_text()  # the card carries the numbers

    # dialogue data streams with `datasets` from its Parquet files; the SFT model is a stock causal LM whose
    # tokenizer carries the chat template, and its chat answers were scored on the held-out voices
    from datasets import load_dataset

    dialogues = load_dataset(str(out / "dialogue"), split="train")
    built = json.loads((out / "dialogue" / "stats.json").read_text())
    # dialogues whose answer speech ran away (micro's text-to-token model is barely trained) are dropped, counted
    assert len(dialogues) == built["dialogues"]["train"] > 0
    assert (
        len(dialogues) + built["dialogues_dropped_runaway_answer"]
        >= load_preset("micro")["dialogue"]["dialogues"]["train"]
    )
    assert all(t["assistant_speech"] and t["answer"] in t["assistant_text"].lower() for d in dialogues for t in d["turns"]
               if t["answer"] not in ("yes", "no"))  # fmt: skip
    sft_tok = AutoTokenizer.from_pretrained(out / "sft")
    sft = AutoModelForCausalLM.from_pretrained(out / "sft")
    from modeling_speechtext.data.dialogue import dialogue_messages, layout_from_tokenizer

    layout = layout_from_tokenizer(sft_tok, **{k: sft.config.speech_text[k] for k in ("text_chunk", "speech_chunk")})
    row = dialogues[0]
    turn = row["turns"][0]
    messages = dialogue_messages({**row, "turns": [turn]}, sft_tok, layout)
    prompt = sft_tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
    full = sft_tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    text_ids = sft_tok(turn["assistant_text"], add_special_tokens=False)["input_ids"]
    # the saved tokenizer's template renders exactly the layout the logits processor enforces
    assert full[len(prompt["input_ids"]) :] == layout.build(
        text_ids, [layout.audio_offset + s for s in turn["assistant_speech"]]
    )
    assert sft.get_input_embeddings().num_embeddings >= len(sft_tok)  # role tokens added to the model as well
    sft_metrics = json.loads((out / "sft" / "metrics.json").read_text())
    chat = sft_metrics["chat_qa"]["unseen_voices"]
    assert 0 <= sft_metrics["data_speech_vs_text_wer"]  # the judge's floor, on the dialogue data's own speech
    assert set(chat) == {"spoken", "text", "spoken_sampled", "text_sampled"}
    assert chat["spoken"]["empty_speech"] == 0 == chat["spoken_sampled"]["empty_speech"]  # the layout forces speech

    # after the pipeline the chat answers a spoken question with text and audio (CLI, the run folder as the model)
    question = json.loads((out / "spoken_qa" / "unseen_voices" / "manifest.jsonl").read_text().splitlines()[0])
    answer = tmp_path / "answer.wav"
    cli = [sys.executable, "-m", "modeling_speechtext.cli.main", "chat", "--run", str(out), "--audio",
           str(out / "spoken_qa" / "unseen_voices" / question["question_audio"]), "--output", str(answer)]  # fmt: skip
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "no answer" not in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    import soundfile as sf

    wave, rate = sf.read(answer)
    assert rate == 16000 and len(wave) >= 1280 and proc.stdout.split("\n")[0].strip()  # speech and a text answer

    # a spoken QA set a user brings (here: the built manifest), scored by the run's tokenizer and LM
    result_path = tmp_path / "my_qa.json"
    manifest = out / "spoken_qa" / "unseen_voices" / "manifest.jsonl"
    cli = [sys.executable, "-m", "modeling_speechtext.cli.main", "eval", "--run", str(out), "--spoken_qa",
           str(manifest), "--output", str(result_path)]  # fmt: skip
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(result_path.read_text())
    assert set(result["accuracy"]) == {"T->T", "S->T"} and "S->T  task  1" in proc.stdout
    counts = {t: r["n"] for t, r in result["accuracy"]["S->T"].items()}
    assert counts == {t: len(per) and per["n"] for t, per in metrics["spoken_qa"]["unseen_voices"]["S->T"].items()}

    # the whole suite from the command line: the stage's own settings, into a folder of its own
    proc = subprocess.run(cli[:6], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "eval_cli" / "metrics.json").read_text())
    assert again["config"]["asr_tts_samples"] == load_preset("micro")["eval"]["asr_tts_samples"]
    assert again["spoken_qa"] == metrics["spoken_qa"]  # same LM, same data, same settings: same numbers
    shutil.rmtree(out / "eval_cli")  # not a stage folder: the second pipeline run must find only its own

    # publishing: every model and dataset to the fake Hub, and back in a fresh process without this package
    from publish_roundtrip import run_roundtrip

    run_roundtrip(out, tmp_path)  # writes under tmp_path: the run folder keeps only its stages

    proc, seconds = _run(out)
    report = json.loads((out / "pipeline.json").read_text())
    assert all(e["status"] == "skipped" for e in report["stages"]), report
    assert "skipped" in proc.stdout


def metrics_answers(out):
    return json.loads((out / "spoken_qa" / "answer_sets.json").read_text())

"""Spoken bAbI evaluation data: the manifest format (its errors), the question choice, and a real build (eSpeak
voices, a tiny random speech tokenizer) whose manifests tokenize back to exactly the items it saved."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dataset_builders.spoken_qa import SpokenQAConfig, build_spoken_qa, choose_questions, story_id
from modeling_speechtext.evaluation.spoken_qa_data import load_spoken_qa, read_manifest, tokenize_records


def _qa_rows(task: int, stories: int, split: str = "test") -> list[dict]:
    people, places = ["Mary", "John", "Sandra"], ["kitchen", "garden", "office"]
    rows = []
    for s in range(stories):
        sentences = [f"{people[(s + k) % 3]} went to the {places[(s + 2 * k) % 3]}." for k in range(3)]
        for q in range(2):
            rows.append({"id": f"qa{task}-{split}-{s:04d}-{q:02d}", "task": task, "story": "\n".join(sentences[: q + 2]),
                         "question": f"Where is {people[(s + q) % 3]}?", "answer": places[(s + 2 * q) % 3]})  # fmt: skip
    return rows


def test_manifest_errors_name_the_file_and_line(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    good = {"id": "q1", "task": 1, "context_audio": ["a.wav"], "question_audio": "a.wav", "answer": "garden"}
    cases = {
        "missing field": ({k: v for k, v in good.items() if k != "answer"}, "missing field"),
        "no context": ({**good, "context_audio": []}, "non-empty list"),
        "bad task": ({**good, "task": "one"}, "task must be an integer"),
        "context length": ({**good, "context": ["a.", "b."]}, "one sentence per context_audio"),
        "missing audio": ({**good, "question_audio": "nope.wav"}, "does not exist"),
    }
    for name, (record, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.jsonl"
        path.write_text(json.dumps(record) + "\n")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            read_manifest(path)
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ValueError, match=r"dup.jsonl:2: duplicate id"):
        read_manifest(dup)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not JSON"):
        read_manifest(bad)
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(good) + "\n")
    assert read_manifest(ok)[0]["question_audio"] == str((tmp_path / "a.wav").resolve())


def test_questions_are_story_disjoint_between_voice_sets():
    rows = _qa_rows(1, 10) + _qa_rows(6, 10)
    chosen = choose_questions(rows, SpokenQAConfig(tasks=[1, 6], questions_per_task=4, questions_per_story=2))
    for vset, qs in chosen.items():
        assert sorted(q["task"] for q in qs) == [1] * 4 + [6] * 4, vset
    seen, unseen = ({story_id(q["id"]) for q in chosen[s]} for s in ("seen_voices", "unseen_voices"))
    assert seen and unseen and not seen & unseen
    with pytest.raises(ValueError, match="task 11"):
        choose_questions(rows, SpokenQAConfig(tasks=[11]))


@pytest.fixture(scope="module")
def speech_tokenizer(tmp_path_factory):
    from t2t_fixtures import tiny_text_tokenizer

    from modeling_speechtext.generation.speech_tokenization import build_feature_extractor
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    torch.manual_seed(0)
    bpe = tiny_text_tokenizer()
    cfg = SpeechTokenizerConfig(d_model=32, encoder_layers=3, quantize_position=2, encoder_attention_heads=2,
                                encoder_ffn_dim=64, codebook_size=16, codebook_dim=8, asr_vocab_size=len(bpe),
                                max_source_positions=400)  # fmt: skip
    model = SpeechTokenizerModel(cfg)
    model.set_asr_vocabulary(bpe)
    path = tmp_path_factory.mktemp("st") / "speech_tokenizer"
    model.save_pretrained(path)
    build_feature_extractor(cfg).save_pretrained(path)
    return path


@pytest.mark.tts
def test_build_writes_manifests_that_tokenize_back_to_the_saved_items(speech_tokenizer, tmp_path):
    from datasets import Dataset, DatasetDict

    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    qa = DatasetDict({"train": Dataset.from_list(_qa_rows(1, 6, "train")), "test": Dataset.from_list(_qa_rows(1, 6))})
    voices = {"seen_voices": ["espeak:en-us+m1", "espeak:en+f2"], "unseen_voices": ["espeak:en-us+m7"]}
    cfg = SpokenQAConfig(tasks=[1], questions_per_task=3, num_proc=1)
    stats = build_spoken_qa(qa, speech_tokenizer, tmp_path / "sqa", cfg, voices)
    assert stats["questions"] == {"seen_voices": {"1": 3}, "unseen_voices": {"1": 3}} and stats["dropped"] == 0
    data = load_spoken_qa(tmp_path / "sqa")
    assert data["answer_sets"] == {1: ["garden", "kitchen", "office"]}
    model, fe = load_speech_tokenizer(speech_tokenizer)
    for vset in ("seen_voices", "unseen_voices"):
        items = data["items"][vset]
        assert {it["voice"] for it in items} <= set(voices[vset])
        for it in items:
            assert len(it["story_speech"]) == len(it["story"].split("\n")) >= 2
            assert all(len(s) > 0 for s in it["story_speech"]) and it["question_speech"]
            assert set(data["answer_speech"][it["voice"]]) == {"garden", "kitchen", "office"}
        again = tokenize_records(read_manifest(tmp_path / "sqa" / vset / "manifest.jsonl"), model, fe)
        assert again == [{k: it[k] for k in again[0]} for it in items]  # the user path reads what was built
    assert not (tmp_path / "sqa" / "shards").exists()


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset):
    from modeling_speechtext.evaluation.lm_suite import EvalConfig
    from modeling_speechtext.pipeline.presets import load_preset

    cfg = load_preset(preset)
    assert SpokenQAConfig.from_dict(cfg["spoken_qa"]).tasks[0] == 1
    assert EvalConfig.from_dict(cfg["eval"]).modalities
    stages = cfg["pipeline"]["stages"]
    assert stages.index("spoken_qa") < stages.index("eval")
    if "sft" in stages:  # dialogue SFT grows from the pretrained LM and reads the spoken QA items for its eval
        assert stages.index("pretrain") < stages.index("dialogue") < stages.index("sft") == len(stages) - 1
    else:
        assert stages[-1] == "eval"
    with pytest.raises(ValueError, match="modalities"):
        EvalConfig.from_dict({**cfg["eval"], "modalities": ["S->X"]})
    with pytest.raises(ValueError, match="unknown key"):
        EvalConfig.from_dict({"batchsize": 3})

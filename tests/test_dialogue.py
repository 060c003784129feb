"""Spoken dialogue data and dialogue SFT (issue 22): plans, the chat template's loss parts, LoRA round trip."""

from __future__ import annotations

import pytest
import torch
from lm_fixtures import speech_text_tokenizer, tiny_llama

from dataset_builders.dialogue.build import answer_sentence, plan_dialogues
from dataset_builders.dialogue.config import DialogueConfig
from modeling_speechtext.data.dialogue import (
    CHAT_TEMPLATE,
    ROLE_TOKENS,
    dialogue_messages,
    layout_from_tokenizer,
    to_conversational,
)
from modeling_speechtext.evaluation.dialogue_qa import answer_in


def test_answer_sentence_is_a_full_sentence_that_gives_the_answer():
    assert answer_sentence("Where is Mary?", "kitchen") == "Mary is in the kitchen."
    assert answer_sentence("Is John in the office?", "no") == "No, John is not in the office."
    assert answer_sentence("Is John in the office?", "yes") == "Yes, John is in the office."
    assert (
        answer_sentence("Where was Mary before the garden?", "hallway") == "Mary was in the hallway before the garden."
    )
    assert answer_sentence("What is Fred carrying?", "milk") == "Milk."
    for q, a in [("Where is Mary?", "kitchen"), ("Is John in the office?", "no"), ("Is John in the office?", "yes")]:
        assert answer_in(answer_sentence(q, a), a)
    assert not answer_in("No, John is not in the office.", "yes")
    assert not answer_in("Mary is in the garden.", "kitchen")


def _rows():
    story = ["Mary went to the kitchen.", "John moved to the office.", "Mary went to the garden.", "John left."]
    return [
        {"id": "qa1-train-0001-03", "task": 1, "story": "\n".join(story[:2]), "question": "Where is Mary?", "answer": "kitchen"},
        {"id": "qa1-train-0001-06", "task": 1, "story": "\n".join(story[:3]), "question": "Where is Mary?", "answer": "garden"},
        {"id": "qa1-train-0001-09", "task": 1, "story": "\n".join(story), "question": "Where is John?", "answer": "office"},
        {"id": "qa6-train-0002-03", "task": 6, "story": "Sandra went to the hallway.", "question": "Is Sandra in the hallway?",
         "answer": "yes"},
    ]  # fmt: skip


def test_multi_turn_plan_tells_each_sentence_once_and_later_turns_need_earlier_ones():
    cfg = DialogueConfig(tasks=[1, 6], single_turn_fraction=0.0, max_turns=3, text_user_fraction=0.0)
    dialogues = plan_dialogues(_rows(), 10, cfg, ["espeak:en-us+m1"], salt=0)
    assert len(dialogues) == 2  # one per story
    for _ in range(20):  # turns are drawn: find a 3-turn plan
        d = next(x for x in plan_dialogues(_rows(), 10, cfg, ["v"], salt=_) if x["id"] == "qa1-train-0001")
        if len(d["turns"]) == 3:
            break
    assert [t["user_text"].split("\n") for t in d["turns"]] == [
        ["Mary went to the kitchen.", "John moved to the office.", "Where is Mary?"],
        ["Mary went to the garden.", "Where is Mary?"],
        ["John left.", "Where is John?"],  # "office" is told only in turn 1
    ]
    assert [t["assistant_text"] for t in d["turns"]] == ["Mary is in the kitchen.", "Mary is in the garden.",
                                                          "John is in the office."]  # fmt: skip
    single = plan_dialogues(_rows(), 10, DialogueConfig(tasks=[1], single_turn_fraction=1.0), ["v"], salt=0)
    assert len(single) == 1 and len(single[0]["turns"]) == 1
    q = single[0]["turns"][0]
    row = next(r for r in _rows() if r["answer"] == q["answer"])
    assert q["user_text"] == row["story"] + "\n" + row["question"]  # the whole story up to that question


def test_dialogue_config_refuses_bad_values():
    with pytest.raises(ValueError, match="unknown key"):
        DialogueConfig.from_dict({"dialogs": 3})
    with pytest.raises(ValueError, match="text_user_fraction"):
        DialogueConfig.from_dict({"text_user_fraction": 1.5})
    with pytest.raises(ValueError, match="train >= 1"):
        DialogueConfig.from_dict({"dialogues": {"train": 0}})


def chat_tokenizer(codebook_size=16):
    tok, _ = speech_text_tokenizer(codebook_size)
    tok.add_tokens(list(ROLE_TOKENS), special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    return tok


ROW = {"id": "s1", "task": 1, "voice": "v", "user_modality": "speech", "turns": [
    {"user_text": "Mary went to the kitchen.\nWhere is Mary?", "user_speech": [12, 13, 14, 15], "answer": "kitchen",
     "assistant_text": "Mary is in the kitchen.", "assistant_speech": list(range(12))},
    {"user_text": "Where is Mary?", "user_speech": [14, 15], "answer": "kitchen",
     "assistant_text": "Mary is in the kitchen.", "assistant_speech": [3] * 11}]}  # fmt: skip


def test_chat_template_puts_the_loss_on_the_chosen_parts_and_renders_the_layout_exactly():
    tok = chat_tokenizer()
    lay = layout_from_tokenizer(tok, text_chunk=3, speech_chunk=5)
    messages = dialogue_messages(ROW, tok, lay)
    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tok.apply_chat_template(messages[:2], tokenize=True, return_dict=True)["input_ids"]
    text_ids = tok("Mary is in the kitchen.", add_special_tokens=False)["input_ids"]
    # what the template renders is what the layout builds (and what the logits processor allows)
    assert full[len(prompt["input_ids"]) :] == lay.build(text_ids, [lay.audio_offset + s for s in range(12)])
    masks = {}
    for loss_on in ("all", "text", "speech"):
        out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                      loss_on=loss_on)  # fmt: skip
        masks[loss_on] = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    eos, boa, eoa = tok.eos_token_id, lay.begin_of_audio_id, lay.end_of_audio_id
    assert masks["text"] == [*text_ids, eos] * 2  # text of both assistant turns, and each turn's end
    assert all(lay.is_speech(t) or t in (boa, eoa, eos) for t in masks["speech"])
    assert sum(lay.is_speech(t) for t in masks["speech"]) == 12 + 11
    assert sorted(masks["all"]) == sorted(masks["text"] + [t for t in masks["speech"] if t != eos])
    # user speech is never trained on
    assert not any(lay.audio_offset + s in masks["all"] for s in (12, 13, 14, 15))


@pytest.mark.parametrize("tied", [False, True])
def test_lora_sft_trains_saves_loads_and_merges_to_the_same_logits(tmp_path, tied):
    """Through TRL (conversational rows, assistant-only loss, per-example `loss_on`) with a LoRA whose embeddings
    train (the speech tokens' rows), the adapter saved, reloaded on a fresh base, and merged: same logits."""
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from recipes.lm_trainer import CausalLMSFTTrainer
    from recipes.sft_dialogue import DialogueSFTConfig, speech_lora_config

    def fresh_base():
        model = tiny_llama(tok, seed=3)
        if tied:  # the demo base LM ties its embeddings
            model.config.tie_word_embeddings = True
            model.tie_weights()
        return model

    tok = chat_tokenizer()
    lay = layout_from_tokenizer(tok, text_chunk=3, speech_chunk=5)
    short = {**ROW, "id": "s2", "turns": [{**ROW["turns"][0], "assistant_speech": [1]}]}  # too little speech: dropped
    rows = to_conversational(Dataset.from_list([ROW] * 4 + [short]), tok, lay, {"text": 1, "speech": 1})
    assert (
        len(rows) == 8 and sorted(r["loss_on"] for r in rows["chat_template_kwargs"]) == ["speech"] * 4 + ["text"] * 4
    )
    base = fresh_base()
    before = base.get_input_embeddings().weight.detach().clone()
    args = DialogueSFTConfig(output_dir=str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=4,
                             learning_rate=5e-2, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
                             logging_steps=1, dataloader_num_workers=0, max_length=256)  # fmt: skip
    peft_config = speech_lora_config(LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                task_type="CAUSAL_LM"), base)  # fmt: skip
    trainer = CausalLMSFTTrainer(
        model=base, args=args, train_dataset=rows, processing_class=tok, peft_config=peft_config
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]  # it learns
    model = trainer.model.eval()
    trainer.model.save_pretrained(str(tmp_path / "adapter"))
    x = torch.tensor(
        [tok.apply_chat_template(dialogue_messages(ROW, tok, lay), tokenize=True, return_dict=True)["input_ids"]]
    )
    with torch.no_grad():
        reference = model(input_ids=x).logits
        reloaded = PeftModel.from_pretrained(fresh_base(), str(tmp_path / "adapter")).eval()
        assert torch.allclose(reloaded(input_ids=x).logits, reference, atol=1e-5)
        merged = reloaded.merge_and_unload()
        assert torch.allclose(merged(input_ids=x).logits, reference, atol=1e-4)
        merged.save_pretrained(str(tmp_path / "merged"))  # what the recipe saves and a user loads
        loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
        assert torch.allclose(loaded(input_ids=x).logits, reference, atol=1e-4)
    # the speech tokens' embeddings trained, not only the low-rank attention update
    speech_rows = slice(lay.audio_offset, lay.audio_offset + lay.codebook_size)
    assert not torch.allclose(merged.get_input_embeddings().weight[speech_rows], before[speech_rows])


def test_data_speech_text_wer_is_the_judge_on_the_datas_own_answer_speech():
    from modeling_speechtext.evaluation.dialogue_qa import data_speech_text_wer

    dialogues = [{"turns": [{"assistant_text": "Mary is in the kitchen.", "assistant_speech": [1, 2, 3]},
                            {"assistant_text": "No.", "assistant_speech": []}]}]  # fmt: skip
    heard = {(1, 2, 3): "mary is in the kitchen"}
    assert data_speech_text_wer(dialogues, lambda ids: [heard[tuple(i)] for i in ids]) == 0.0
    assert data_speech_text_wer(dialogues, lambda ids: ["mary is the hallway" for _ in ids]) == 0.4


def test_open_qa_answers_in_a_full_sentence_and_keeps_splits_and_sayable_answers_apart():
    from dataset_builders.dialogue.open_qa import load_open_qa, open_answer_sentence
    from modeling_speechtext.paths import shared_data_dir

    assert open_answer_sentence("What is the supreme law of the land?", "the Constitution") == (
        "The supreme law of the land is the Constitution.")  # fmt: skip
    assert open_answer_sentence("who plays ken barlow in coronation street?", "Tony Warren") == (
        "Tony Warren plays ken barlow in coronation street.")  # fmt: skip
    assert open_answer_sentence("Name one state that borders Mexico.", "Texas") == "One state that borders Mexico is Texas."
    assert open_answer_sentence("Where is the Statue of Liberty?", "New York Harbor") == "The answer is New York Harbor."
    # a subject that ends in a preposition cannot take "is X": the plain form instead
    assert open_answer_sentence("Who is chris cooley married to?", "Christy") == "The answer is Christy."
    assert open_answer_sentence("What was van gogh famous for?", "Painter") == "The answer is Painter."
    root = shared_data_dir()
    if root is None or not (root / "qa" / "uscis_civics").is_dir():
        pytest.skip("no offline QA data (../shared/data/qa)")
    civics = load_open_qa(root / "qa", "uscis_civics", seed=0)
    ids = {s: {r["id"] for r in rows} for s, rows in civics.items()}
    assert not ids["train"] & ids["validation"] and 80 <= len(ids["train"]) and 5 <= len(ids["validation"])
    assert civics == load_open_qa(root / "qa", "uscis_civics", seed=0)  # the split is a function of the id
    said = {r["id"]: r["answer_text"] for rows in civics.values() for r in rows}
    assert "civics-23" not in said  # "Name your U.S. Representative." -> "varies by district": nothing to say
    two = next(r for rows in civics.values() for r in rows if r["question"].startswith("What are two rights of"))
    assert " and " in two["answer_text"] and said["civics-67"] == "Madison"  # two said; glosses dropped
    assert said["civics-88"] == "Missouri"  # "Name one of the two longest rivers": one
    assert said["civics-45"] == "Democratic and Republican"  # a list answer is not joined with its restatement
    web = load_open_qa(root / "qa", "webquestions")
    assert len(web["train"]) > 2000 and len(web["validation"]) > 500
    assert not any("http" in a for rows in web.values() for r in rows for a in r["answers"])  # URLs left out
    with pytest.raises(ValueError, match="unknown open QA source"):
        load_open_qa(root / "qa", "trivia")


def test_dialogue_config_takes_open_qa_alone_and_refuses_bad_sources():
    cfg = DialogueConfig.from_dict({"tasks": [], "dialogues": {}, "open_qa": {"webquestions": {"train": 5}}})
    assert cfg.open_qa == {"webquestions": {"train": 5}}
    with pytest.raises(ValueError, match="unknown open_qa source"):
        DialogueConfig.from_dict({"open_qa": {"trivia": {"train": 5}}})
    with pytest.raises(ValueError, match="train >= 1"):
        DialogueConfig.from_dict({"tasks": [], "open_qa": {"webquestions": {"validation": 5}}})
    with pytest.raises(ValueError, match="counts >= 0"):
        DialogueConfig.from_dict({"open_qa": {"webquestions": {"train": -1}}})


@pytest.mark.tts
def test_open_qa_dialogues_build_with_speech_on_both_sides(tmp_path):
    """An open-vocabulary build (no bAbI): spoken civics questions, answers as text + speech tokens, one split each."""
    from datasets import load_dataset
    from speech_text_fixtures import chat_parts
    from t2t_fixtures import tiny_t2t

    from dataset_builders.dialogue.build import build_dialogues
    from modeling_speechtext.paths import shared_data_dir

    if shared_data_dir() is None or not (shared_data_dir() / "qa" / "uscis_civics").is_dir():
        pytest.skip("no offline QA data (../shared/data/qa)")
    st, _, _, fe = chat_parts()
    st.save_pretrained(tmp_path / "st")
    fe.save_pretrained(tmp_path / "st")
    # a random synthesizer stops at its end token at random: a generous budget keeps runaways rare
    tiny_t2t(codebook_size=16, max_tokens_per_char=4.0).save_pretrained(tmp_path / "t2t")
    cfg = DialogueConfig(tasks=[], dialogues={}, open_qa={"uscis_civics": {"train": 4, "validation": 2}},
                         text_user_fraction=0.0, num_proc=1, seed=3)  # fmt: skip
    stats = build_dialogues(None, tmp_path / "out", cfg, ["espeak:en-us+m1"], tmp_path / "st", tmp_path / "t2t")
    assert stats["open_qa_planned"] == {"uscis_civics": {"train": 4, "validation": 2}}
    data = load_dataset(str(tmp_path / "out"))
    rows = [r for split in data.values() for r in split]
    assert len(rows) == 6 - stats["dialogues_dropped"] - stats["dialogues_dropped_runaway_answer"] and rows
    assert stats["dialogues_by_source"] == {"uscis_civics": {s: len(d) for s, d in data.items()}}
    for r in rows:
        (turn,) = r["turns"]
        assert r["source"] == "uscis_civics" and r["task"] == 0 and r["user_modality"] == "speech"
        assert turn["user_speech"] and turn["assistant_speech"] and max(turn["assistant_speech"]) < 16
        assert turn["assistant_text"].endswith(".") and turn["answer"].rstrip(".") in turn["assistant_text"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "uscis_civics" in card and "bAbI stories told" not in card


def test_sft_dropout_sets_the_lms_dropout_fields_and_refuses_bad_values(tmp_path):
    from recipes.sft_dialogue import DialogueSFTArguments, dropout_overrides, prepare_model

    tok, _ = speech_text_tokenizer(16)
    lm = tiny_llama(tok)
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    assert dropout_overrides(str(tmp_path / "lm"), None) == {}
    assert dropout_overrides(str(tmp_path / "lm"), 0.5) == {"attention_dropout": 0.5}
    model, _, _ = prepare_model(str(tmp_path / "lm"), DialogueSFTArguments(dropout=0.5))
    assert model.config.attention_dropout == 0.5
    ids = torch.arange(1, 12)[None]
    model.train()
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)  # dropout is live in training
    model.eval()
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        dropout_overrides(str(tmp_path / "lm"), 1.5)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_dialogue_and_sft_presets_parse(preset, tmp_path):
    from modeling_speechtext.pipeline.presets import load_preset
    from recipes.sft_dialogue import _parser

    cfg = load_preset(preset)
    assert {"dialogue", "sft"} <= set(cfg["pipeline"]["stages"])
    dialogue = DialogueConfig.from_dict(cfg["dialogue"])
    args, training_args, _ = _parser().parse_dict({**cfg["sft"], "output_dir": str(tmp_path), "use_cpu": True})
    assert training_args.assistant_only_loss and (args.text_chunk, args.speech_chunk) == (13, 26)
    if preset == "paper":  # PAPER.md §7: open vocabulary; 4 + 20 epochs of the two copies, lr 1e-5 -> 1e-6, ...
        assert dialogue.tasks == [] and set(dialogue.open_qa) == {"webquestions", "uscis_civics"}
        assert args.copies == {"text": 4, "speech": 20} and args.dropout == 0.5
        assert training_args.learning_rate == 1e-5 and training_args.lr_scheduler_kwargs == {"min_lr": 1e-6}
        assert training_args.weight_decay == 0.1 and training_args.max_grad_norm == 1.0

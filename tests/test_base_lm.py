"""The base LM stage: a stock causal LM trained on the text corpus (or a given one referenced), and the QA scorer."""

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from modeling_speechtext.paths import shared_data_dir
from modeling_speechtext.pipeline.presets import load_preset


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    if shared_data_dir() is None:
        pytest.skip("needs the offline data (../shared/data)")
    from dataset_builders.text_corpus import build_text_corpus
    from dataset_builders.text_tokenizer import run_stage as tokenizer_stage

    preset = load_preset("micro")
    run = tmp_path_factory.mktemp("run")
    build_text_corpus({**preset["text_corpus"], "seed": 0}, run / "text_corpus")
    tokenizer_stage({**preset["text_tokenizer"], "seed": 0}, run / "text_tokenizer", run)
    return run


@pytest.fixture(scope="module")
def trained(micro_run):
    from recipes.train_base_lm import run_stage

    cfg = {**load_preset("micro")["base_lm"], "seed": 0, "max_steps": 25, "learning_rate": 5e-3}
    metrics = run_stage(cfg, micro_run / "base_lm", micro_run)
    return micro_run / "base_lm", metrics


def test_trains_a_stock_lm_that_loads_without_remote_code(trained):
    folder, metrics = trained
    # it learned something: well below the uniform distribution's cross-entropy over the vocabulary
    assert metrics["eval_loss"] < math.log(metrics["vocab_size"]) - 1.0
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-3)
    assert metrics["train_tokens_seen"] > 0 and metrics["steps"] == 25
    assert 0 <= metrics["qa_tt_ranked"] <= 1 and metrics["qa_questions"] == 16
    assert (folder / "loss_curve.png").stat().st_size > 0 and not list(folder.glob("checkpoint-*"))
    assert json.loads((folder / "metrics.json").read_text())["eval_loss"] == metrics["eval_loss"]
    # a stock architecture: no auto_map, and a fresh process loads it with plain transformers (no remote code)
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}); t = AutoTokenizer.from_pretrained({str(folder)!r})\n"
        "ids = t('Mary went to the kitchen.', return_tensors='pt').input_ids\n"
        "print(type(m).__name__, round(float(m(ids, labels=ids).loss), 4))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "LlamaForCausalLM"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = tok("Mary went to the kitchen.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert float(out[1]) == pytest.approx(float(model(ids, labels=ids).loss), abs=1e-4)


def test_a_given_model_is_referenced_not_copied(trained, tmp_path):
    from recipes.train_base_lm import read_reference, run_stage

    folder, _ = trained
    metrics = run_stage({"model_name_or_path": str(folder), "seed": 0}, tmp_path / "ref", tmp_path)
    assert metrics == {"model_name_or_path": str(folder), "trained": False}
    assert read_reference(tmp_path / "ref") == str(folder) and read_reference(folder) == str(folder)
    assert not (tmp_path / "ref" / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="neither a model folder"):
        read_reference(tmp_path)


def test_bad_inputs_are_named(micro_run, tmp_path):
    from recipes.train_base_lm import run_stage

    cfg = {**load_preset("micro")["base_lm"], "seed": 0}
    with pytest.raises(FileNotFoundError, match="run the text_corpus stage"):
        run_stage(cfg, tmp_path / "a", tmp_path)
    with pytest.raises(ValueError, match="no split 'dev'"):
        run_stage({**cfg, "eval_split": "dev"}, tmp_path / "b", micro_run)
    with pytest.raises(ValueError, match="has no column 'body'"):
        run_stage({**cfg, "text_column": "body"}, tmp_path / "c", micro_run)
    with pytest.raises(ValueError, match=r"no document of sources \['babi/qa19'\]"):
        run_stage({**cfg, "sources": ["babi/qa19"]}, tmp_path / "d", micro_run)


def test_sources_keep_only_the_named_documents(micro_run, tmp_path):
    from recipes.train_base_lm import BaseLMArguments, _load_documents

    path = micro_run / "text_corpus" / "documents"
    from datasets import load_from_disk

    train, _ = _load_documents(path, BaseLMArguments(sources=["babi/qa6"]))
    everything, _ = _load_documents(path, BaseLMArguments())
    source = dict(zip(load_from_disk(str(path))["train"]["text"], load_from_disk(str(path))["train"]["source"]))
    assert 0 < len(train) < len(everything)
    assert {source[t] for t in train["text"]} == {"babi/qa6"}


def test_packed_documents_do_not_attend_across(trained):
    """`packing_strategy: bfd` (best-fit, padding-free: the GPU choice) gives each document the logits it has
    alone (no attention leaks); the default `wrapped` ends every document with eos inside its blocks."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from recipes.train_base_lm import BaseLMSFTConfig

    folder, _ = trained
    model, tok = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    docs = ["Mary went to the kitchen.\nWhere is Mary? kitchen.", "John moved to the garden.\nSandra left."]
    args = BaseLMSFTConfig(
        output_dir=str(folder / "tmp"), max_length=64, per_device_train_batch_size=2, use_cpu=True, bf16=False,
        report_to="none", include_num_input_tokens_seen="no", packing_strategy="bfd",
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": docs}), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1  # both documents in one packed row
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        positions = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        ids = batch["input_ids"][0]
        pieces = [model(input_ids=ids[a:b].unsqueeze(0)).logits[0] for a, b in zip(starts, starts[1:])]
    assert len(pieces) == 2
    assert torch.allclose(packed, torch.cat(pieces), atol=1e-4)
    wrapped = SFTTrainer(
        model=model, args=replace(args, packing_strategy="wrapped", max_length=16),
        train_dataset=Dataset.from_dict({"text": docs}), processing_class=tok,
    ).train_dataset  # fmt: skip
    stream = [i for row in wrapped["input_ids"] for i in row]
    assert all(len(row) == 16 for row in wrapped["input_ids"][:-1])
    assert stream.count(tok.eos_token_id) == 2 and stream[-1] == tok.eos_token_id


def test_qa_scoring_is_batch_independent_and_parses_answers():
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling_speechtext.evaluation.babi_qa import continuation_logprobs, first_answer, rank_answers

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, pad_token_id=0)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    pairs = [([1, 2, 3, 4, 5], [6]), ([7, 8], [9, 10, 11]), ([12], [13, 14])]
    batched = continuation_logprobs(model, pairs, pad_token_id=0, batch_size=3)
    alone = [continuation_logprobs(model, [p], pad_token_id=0)[0] for p in pairs]
    assert batched == pytest.approx(alone, abs=1e-4)
    with torch.no_grad():  # the definition: sum of log-softmax of each continuation token
        logp = torch.log_softmax(model(torch.tensor([[7, 8, 9, 10, 11]])).logits[0], -1)
    assert alone[1] == pytest.approx(float(logp[1, 9] + logp[2, 10] + logp[3, 11]), abs=1e-4)
    best = rank_answers(model, [[7, 8]], [[[9, 10, 11], [6]]], pad_token_id=0)[0]
    assert best == int(alone[1] < continuation_logprobs(model, [([7, 8], [6])], 0)[0])
    assert first_answer(" bathroom.\nJohn went") == "bathroom" and first_answer(" apple, milk. x") == "apple, milk"
    with pytest.raises(ValueError, match="at least one token"):
        continuation_logprobs(model, [([1], [])], pad_token_id=0)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset, tmp_path):
    from recipes.train_base_lm import _parser

    cfg = load_preset(preset)["base_lm"]
    args, training_args = _parser().parse_dict({**cfg, "output_dir": str(tmp_path), "use_cpu": True})
    # demo and micro: unpacked rows (question rows / documents), since packed blocks cut the stories (measured)
    assert training_args.packing == (preset in ("tiny", "paper")) and training_args.packing_strategy == "wrapped"
    if preset == "paper":
        assert args.model_name_or_path == "THUDM/glm-4-9b" and not args.continue_training
    else:
        assert args.model_name_or_path is None and args.hidden_size % args.num_attention_heads == 0


def test_qa_rows_train_only_the_answer_and_mix_by_fraction(micro_run, tmp_path):
    """`qa_fraction`: question rows end with the answer and carry loss only there; documents carry it everywhere;
    the mix follows the fraction; a packed run or a missing qa folder is refused by name."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from modeling_speechtext.evaluation.babi_qa import answer_text
    from recipes.train_base_lm import BaseLMArguments, _load_documents, run_stage, with_qa_rows

    tok = AutoTokenizer.from_pretrained(micro_run / "text_tokenizer")
    args = BaseLMArguments(sources=["babi/qa1"], qa_fraction=0.3)
    docs, _ = _load_documents(micro_run / "text_corpus" / "documents", args)
    rows = with_qa_rows(docs, micro_run / "text_corpus" / "qa", tok, args, seed=0)
    questions = [r for r in rows if 0 in r["completion_mask"]]
    questions_of_qa1 = [t for t in load_from_disk(str(micro_run / "text_corpus" / "qa"))["train"]["task"] if t == 1]
    documents = [r for r in rows if 0 not in r["completion_mask"]]
    assert len(documents) >= len(docs) and questions  # all_exhausted: every document and question at least once
    assert 0.15 < len(questions) / len(rows) < 0.75
    for r in questions:
        start = r["completion_mask"].index(1)
        assert set(r["completion_mask"][start:]) == {1} and r["input_ids"][-1] == tok.eos_token_id
        answer = tok.decode(r["input_ids"][start:-1])
        assert answer.startswith(" ") and answer.endswith(".") and "\n" not in answer
        assert answer in {answer_text(a) for a in ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")}
        assert "Where is" in tok.decode(r["input_ids"][:start])
    cfg = {**load_preset("micro")["base_lm"], "seed": 0, "sources": ["babi/qa1"], "qa_fraction": 0.3, "max_steps": 2}
    with pytest.raises(ValueError, match="needs packing: false"):
        run_stage({**cfg, "packing": True}, tmp_path / "a", micro_run)
    with pytest.raises(ValueError, match="needs completion_only_loss"):
        run_stage({**cfg, "completion_only_loss": False}, tmp_path / "b", micro_run)
    with pytest.raises(ValueError, match=r"qa_fraction must be in \(0, 1\]"):
        run_stage({**cfg, "qa_fraction": 1.5}, tmp_path / "c", micro_run)
    only = with_qa_rows(
        docs, micro_run / "text_corpus" / "qa", tok, BaseLMArguments(sources=["babi/qa1"], qa_fraction=1.0), 0
    )
    assert len(only) == len(questions_of_qa1) and all(0 in r["completion_mask"] for r in only)
    metrics = run_stage(cfg, tmp_path / "d", micro_run)
    assert metrics["qa_fraction"] == 0.3 and metrics["train_rows"] == len(rows) and metrics["steps"] == 2
    metrics = run_stage({**cfg, "qa_fraction": 1.0}, tmp_path / "e", micro_run)  # the demo's path
    assert metrics["train_rows"] == len(questions_of_qa1) and metrics["train_documents"] == 0
    assert "bAbI train questions" in (tmp_path / "e" / "README.md").read_text()

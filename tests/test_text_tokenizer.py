"""Text tokenizer: byte-level BPE round trip, transformers loading, special tokens, the tiny world's one token per
word, the pipeline stage (trained and `pretrained` copy)."""

import json

import pytest

from dataset_builders import text_tokenizer as tt
from modeling_speechtext.paths import shared_data_dir
from modeling_speechtext.pipeline.presets import load_preset

TEXTS = [
    "Mary moved to the bathroom.\nJohn went to the hallway.\nWhere is Mary? bathroom.",
    "The kitchen is north of the garden.\nHow do you go from the kitchen to the garden? south, east.",
    "Sandra picked up the football there.\nWhat is Sandra carrying? football.",
] * 20

ROUND_TRIP = [
    "Where is Mary? bathroom.",
    "  leading and trailing spaces  \n\n\ttabs\r\n",
    "Unicode: caf\u00e9 na\u00efve \u2014 \u6771\u4eac \U0001f600 and a word never seen: xylophone!",
    "<|endoftext|> inside text, and 3.14159 digits",
    "",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tok = tt.train_text_tokenizer(iter(TEXTS), vocab_size=320, output_dir=out)
    return out, tok


def test_round_trip_exact(trained):
    out, _ = trained
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    for text in ROUND_TRIP:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, text
    assert tok.unk_token is None  # byte-level: nothing is unknown


def test_loads_as_transformers_fast_tokenizer(trained):
    out, tok = trained
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    loaded = AutoTokenizer.from_pretrained(str(out))
    assert isinstance(loaded, PreTrainedTokenizerFast)  # TokenizersBackend in transformers 5
    assert loaded.eos_token == loaded.pad_token == loaded.bos_token == "<|endoftext|>"
    assert loaded.eos_token_id == 0
    assert len(loaded) == len(tok) <= 320
    assert loaded("a<|endoftext|>b")["input_ids"] == [
        loaded.convert_tokens_to_ids("a"),
        0,
        loaded.convert_tokens_to_ids("b"),
    ]
    assert loaded.tokenize(" bathroom") == ["\u0120bathroom"]  # frequent words merge into one token
    assert loaded("Where is Mary?")["input_ids"] == tok("Where is Mary?")["input_ids"]


def test_extra_special_tokens_and_determinism(tmp_path):
    tok = tt.train_text_tokenizer(iter(TEXTS), 300, tmp_path / "a", special_tokens=["<|endoftext|>", "<|user|>"])
    ids = tok("<|user|> Where is Mary?", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0]) == "<|user|>" and ids[0] == 1
    again = tt.train_text_tokenizer(iter(TEXTS), 300, tmp_path / "b", special_tokens=["<|endoftext|>", "<|user|>"])
    assert again.get_vocab() == tok.get_vocab()


def test_vocab_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size 100 is too small"):
        tt.train_text_tokenizer(iter(TEXTS), 100)


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    if shared_data_dir() is None:
        pytest.skip("needs the offline data (../shared/data)")
    from dataset_builders.text_corpus import build_text_corpus

    run = tmp_path_factory.mktemp("run")
    build_text_corpus({**load_preset("micro")["text_corpus"], "seed": 0}, run / "text_corpus")
    return run


def test_run_stage_tiny_world_one_token_per_word(micro_run):
    cfg = {"vocab_size": 512, "min_frequency": 1, "model_max_length": 2048, "seed": 0}
    out = micro_run / "text_tokenizer"
    metrics = tt.run_stage(cfg, out, micro_run)
    assert json.loads((out / "stats.json").read_text()) == metrics
    # the closed vocabulary saturates: training stops below vocab_size with every word form one token
    assert metrics["vocab_size"] < 512
    assert metrics["validation_documents_single_token_word_fraction"] >= 0.99  # a rare form may be unseen
    assert 1.0 < metrics["validation_sentences_tokens_per_word"] < 1.6  # words + punctuation/newlines
    assert metrics["train_documents_tokens"] > metrics["validation_documents_tokens"] > 0

    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.model_max_length == 2048
    train = load_from_disk(str(micro_run / "text_corpus" / "documents"))["train"]["text"]
    assert tt.tokenizer_stats(tok, iter(train))["single_token_word_fraction"] == 1.0
    for doc in load_from_disk(str(micro_run / "text_corpus" / "documents"))["test"]["text"][:20]:
        assert tok.decode(tok(doc)["input_ids"]) == doc


def test_run_stage_pretrained_copy_and_errors(micro_run, trained, tmp_path):
    src, _ = trained
    metrics = tt.run_stage({"pretrained": str(src), "seed": 0}, tmp_path / "copy", micro_run)
    assert metrics["source"] == f"pretrained:{src}"
    assert (tmp_path / "copy" / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="vocab_size"):
        tt.run_stage({"seed": 0}, tmp_path / "x", micro_run)
    with pytest.raises(ValueError, match="unknown key"):
        tt.run_stage({"vocab": 10, "seed": 0}, tmp_path / "x", micro_run)
    with pytest.raises(FileNotFoundError, match="text_corpus"):
        tt.run_stage({"vocab_size": 300, "seed": 0}, tmp_path / "y", tmp_path / "empty_run")
    with pytest.raises(ValueError, match="space_after_newline applies to a trained BPE"):
        tt.run_stage({"pretrained": str(trained[0]), "space_after_newline": True}, tmp_path / "z", micro_run)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets(preset):
    cfg = load_preset(preset)["text_tokenizer"]
    assert set(cfg) <= tt._STAGE_KEYS
    if preset == "paper":
        assert cfg["pretrained"] and "vocab_size" not in cfg
    else:
        assert cfg["vocab_size"] >= 257


def test_space_after_newline_spells_a_name_alike_everywhere(tmp_path):
    """`space_after_newline`: a name at a line start and inside a question is one id (without it, two), the text
    still round-trips except a newline followed by a space (documented), and a saved tokenizer keeps the rule."""
    from transformers import AutoTokenizer

    plain = tt.train_text_tokenizer(iter(TEXTS), 500)
    spaced = tt.train_text_tokenizer(iter(TEXTS), 500, tmp_path / "s", space_after_newline=True)
    story = "Mary moved to the bathroom.\nMary went to the hallway.\nWhere is Mary? hallway."
    assert plain.tokenize(story).count("\u0120Mary") == 1  # the line-initial ones are "Mary"
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "s"))
    for tok in (spaced, loaded):
        assert tok.tokenize(story).count("\u0120Mary") == 2 and tok.tokenize(story)[0] == "Mary"
        for text in [story, *ROUND_TRIP, "a\n\nb\n"]:
            assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text, text
        assert tok.decode(tok("a\n b", add_special_tokens=False)["input_ids"]) == "a\nb"  # the one lossy case
    stats = tt.tokenizer_stats(loaded, iter([story]))
    assert stats["single_token_word_fraction"] == 1.0

"""The speech tokenizer's ASR vocabulary: its own file next to the weights, not config.json; clear errors."""

import json

import pytest
import torch
from test_modeling_speech_tokenizer import tiny_bpe, tiny_model

from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel
from modeling_speechtext.models.speech_tokenizer.tokenization_speech_tokenizer import (
    ASR_VOCAB_NAME,
    SpeechTokenizerAsrVocabulary,
)


def model_always_saying(token_id: int, tok):
    """A model whose CTC head prefers `token_id` at every step: its transcript of any tokens is that one piece."""
    model = tiny_model(asr_vocab_size=len(tok))
    with torch.no_grad():
        model.ctc_head.weight.zero_()
        model.ctc_head.bias.zero_()
        model.ctc_head.bias[token_id] = 10.0
    model.set_asr_vocabulary(tok)
    return model


def test_decoding_matches_the_bpe_tokenizer_and_skips_special_ids():
    tok = tiny_bpe()
    vocabulary = SpeechTokenizerAsrVocabulary.from_tokenizer(tok)
    assert len(vocabulary) == len(tok) and vocabulary.byte_level and vocabulary.special_ids == [tok.eos_token_id]
    ids = tok("mary went to the kitchen")["input_ids"]
    assert vocabulary.decode(ids + [tok.eos_token_id]) == "mary went to the kitchen"
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # random piece sequences: the same text as the tokenizer's own decoder
        row = torch.randint(0, len(tok), (12,), generator=g).tolist()
        assert vocabulary.decode(row) == tok.decode(row, skip_special_tokens=True).strip(), row
    # the whole path: tokens -> post-quantizer layers -> CTC best path -> pieces -> text
    word = tok.convert_tokens_to_ids("Ġkitchen")
    assert model_always_saying(word, tok).transcribe_tokens([[1, 2, 3], [4], []]) == ["kitchen", "kitchen", ""]


def test_non_byte_level_pieces_are_joined_as_they_are():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz ")
    word_level = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="a"))
    word_level.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    vocabulary = SpeechTokenizerAsrVocabulary.from_tokenizer(PreTrainedTokenizerFast(tokenizer_object=word_level))
    assert not vocabulary.byte_level  # ' ' is not in GPT-2's printable byte alphabet
    assert vocabulary.decode([chars.index(c) for c in "hi there "]) == "hi there"


def test_config_json_holds_sizes_only_and_the_vocabulary_file_round_trips(tmp_path):
    tok = tiny_bpe()
    model = tiny_model(asr_vocab_size=len(tok))
    model.set_asr_vocabulary(tok)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["asr_vocab_size"] == len(tok)
    assert not {"asr_vocab", "asr_special_ids", "asr_byte_level", "_legacy_asr_vocabulary"} & set(config)
    saved = json.loads((tmp_path / ASR_VOCAB_NAME).read_text())
    assert saved["size"] == len(tok) and saved["pieces"] == model.asr_vocabulary.pieces
    loaded = SpeechTokenizerModel.from_pretrained(tmp_path)
    assert loaded.asr_vocabulary == model.asr_vocabulary
    ids = [[1, 2, 3, 4, 5], [7, 7, 2]]
    assert loaded.transcribe_tokens(ids) == model.transcribe_tokens(ids)
    # saving a model without a vocabulary into the folder removes the now foreign file
    tiny_model(asr_vocab_size=len(tok)).save_pretrained(tmp_path)
    assert not (tmp_path / ASR_VOCAB_NAME).exists()


def test_missing_or_mismatched_vocabulary_file_gives_a_clear_error(tmp_path):
    tok = tiny_bpe()
    model = tiny_model(asr_vocab_size=len(tok))
    model.set_asr_vocabulary(tok)
    model.save_pretrained(tmp_path)
    path = tmp_path / ASR_VOCAB_NAME
    data = json.loads(path.read_text())
    path.unlink()
    no_vocab = SpeechTokenizerModel.from_pretrained(tmp_path)
    assert no_vocab.asr_vocabulary is None
    assert no_vocab.encode(torch.randn(1, 80, 40))[0].shape == (1, 5)  # still encodes: 40 mel frames, 5 tokens
    with pytest.raises(ValueError, match=rf"{ASR_VOCAB_NAME} not found in {tmp_path}.*set_asr_vocabulary"):
        no_vocab.transcribe_tokens([[1, 2]])
    path.write_text(json.dumps({**data, "pieces": data["pieces"][:-1]}))
    with pytest.raises(ValueError, match=rf"has {len(tok) - 1} pieces but the model's asr_vocab_size is {len(tok)}"):
        SpeechTokenizerModel.from_pretrained(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable ASR vocabulary"):
        SpeechTokenizerModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="asr_vocab_size is 7"):
        tiny_model(asr_vocab_size=7).set_asr_vocabulary(tok)


def test_a_config_that_still_carries_the_vocabulary_transcribes_identically(tmp_path):
    """Folders saved before asr_vocab.json existed (trained runs) keep their transcripts; a re-save migrates them."""
    tok = tiny_bpe()
    model = tiny_model(asr_vocab_size=len(tok))
    model.set_asr_vocabulary(tok)
    model.save_pretrained(tmp_path / "old")
    (tmp_path / "old" / ASR_VOCAB_NAME).unlink()
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    v = model.asr_vocabulary
    config.update(asr_vocab=v.pieces, asr_special_ids=v.special_ids, asr_byte_level=v.byte_level)
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = SpeechTokenizerModel.from_pretrained(tmp_path / "old")
    assert old.asr_vocabulary == v
    ids = [[1, 2, 3, 4, 5], [9, 8, 7, 6]]
    expected = model.transcribe_tokens(ids)
    assert any(expected) and old.transcribe_tokens(ids) == expected
    old.save_pretrained(tmp_path / "new")
    assert "asr_vocab" not in json.loads((tmp_path / "new" / "config.json").read_text())
    assert SpeechTokenizerModel.from_pretrained(tmp_path / "new").transcribe_tokens(ids) == expected

import pytest
import torch
from t2t_fixtures import tiny_text_tokenizer

from modeling_speechtext.constants import BEGIN_OF_AUDIO, END_OF_AUDIO
from modeling_speechtext.vocab import SpeechVocab, add_speech_tokens, check_model_vocab


def _tiny_lm(vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def test_add_speech_tokens_contiguous_mean_resized_and_idempotent(tmp_path):
    tok = tiny_text_tokenizer()
    n_text = len(tok)
    torch.manual_seed(0)
    model = _tiny_lm(n_text)
    old = model.get_input_embeddings().weight.detach().clone()
    vocab = add_speech_tokens(model, tok, 50)
    assert vocab.audio_offset == n_text and vocab.codebook_size == 50
    assert tok.convert_tokens_to_ids("<|audio_49|>") == n_text + 49
    assert {vocab.begin_of_audio_id, vocab.end_of_audio_id} == {n_text + 50, n_text + 51}
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == n_text + 52
    assert torch.equal(emb[:n_text], old)  # old rows untouched
    # mean resizing: new rows sit near the old mean (a zero/normal init would not track it)
    assert torch.allclose(emb[n_text:].mean(0), old.mean(0), atol=3 * old.std().item())
    assert model.lm_head.weight.shape[0] == n_text + 52  # tied head follows
    # a second call is a no-op; a different size is an error
    assert add_speech_tokens(model, tok, 50) == vocab and len(tok) == n_text + 52
    with pytest.raises(ValueError, match="codebook_size=64"):
        add_speech_tokens(model, tok, 64)
    # round trip through save/load: the same mapping comes back
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert SpeechVocab.from_tokenizer(AutoTokenizer.from_pretrained(tmp_path)) == vocab


def test_tokenizer_only_and_id_helpers():
    tok = tiny_text_tokenizer()
    vocab = add_speech_tokens(None, tok, 8)
    ids = vocab.speech_to_token_ids([0, 7, 3])
    assert ids == [vocab.audio_offset, vocab.audio_offset + 7, vocab.audio_offset + 3]
    assert vocab.token_to_speech_ids([vocab.begin_of_audio_id, *ids, vocab.end_of_audio_id, 5]) == [0, 7, 3]
    with pytest.raises(ValueError, match="not a speech token"):
        vocab.token_to_speech_ids([5], strict=True)
    with pytest.raises(ValueError, match="outside the codebook"):
        vocab.speech_to_token_ids([8])
    assert vocab.wrap([1]) == [vocab.begin_of_audio_id, vocab.audio_offset + 1, vocab.end_of_audio_id]
    # string form tokenizes to the same ids, and decoding text-only drops speech
    text = "Mary" + BEGIN_OF_AUDIO + vocab.speech_to_text([0, 7]) + END_OF_AUDIO
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert enc[-4:] == [vocab.begin_of_audio_id, vocab.audio_offset, vocab.audio_offset + 7, vocab.end_of_audio_id]
    assert tok.decode(enc, skip_special_tokens=True) == "Mary"


def test_missing_or_broken_vocab_is_a_clear_error():
    tok = tiny_text_tokenizer()
    with pytest.raises(ValueError, match="lacks the speech tokens"):
        SpeechVocab.from_tokenizer(tok)
    with pytest.raises(ValueError, match="positive int"):
        add_speech_tokens(None, tok, 0)
    vocab = add_speech_tokens(None, tok, 4)
    with pytest.raises(ValueError, match="embeddings have"):
        check_model_vocab(_tiny_lm(10), vocab)

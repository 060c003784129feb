import pytest

from modeling_speechtext.evaluation.wer import error_rates, word_error_rate
from modeling_speechtext.generation.speech_tokenization import length_buckets
from modeling_speechtext.sentences import sentence_spans, split_sentences


def test_wer_policy():
    # normalised first (case, punctuation), an empty hypothesis is all deletions, an empty reference is skipped
    assert word_error_rate(["Mary went home."], ["mary went home"]) == 0
    assert word_error_rate(["mary went home", "John"], ["", "john"]) == pytest.approx(3 / 4)
    out = error_rates(["", "a b"], ["x y z", "a c"])
    assert out["n_scored"] == 1 and out["wer"] == pytest.approx(0.5) and out["cer"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no non-empty reference"):
        word_error_rate(["", " ... "], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_sentence_policies():
    text = "Mr. Holmes met H. G. Wells. Where is Mary? bathroom. Done"
    assert split_sentences(text) == ["Mr. Holmes met H. G. Wells.", "Where is Mary? bathroom.", "Done"]
    loose = split_sentences(text, strict=False)
    assert loose[-3:] == ["Where is Mary?", "bathroom.", "Done"] and loose[0] == "Mr."
    # ranges index the original text, line ends cut loose units
    spans = sentence_spans("  One two\nthree.  ", strict=False)
    assert spans == [(2, 9), (10, 16)]


def test_length_buckets_inference_and_training():
    lengths = [5, 1, 9, 3, 7, 2]
    sorted_batches = length_buckets(lengths, batch_size=2)
    assert sorted_batches == [[1, 5], [3, 0], [4, 2]]
    # padded frames (longest x count) stay under the limit
    assert all(max(lengths[i] for i in b) * len(b) <= 10 for b in length_buckets(lengths, 8, max_batch_frames=10))
    a, b, c = (length_buckets(lengths * 10, 4, seed=s) for s in (0, 0, 1))
    assert a == b and a != c  # a seed shuffles reproducibly
    assert sorted(i for batch in a for i in batch) == list(range(60))

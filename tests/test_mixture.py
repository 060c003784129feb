"""The pretraining mixture: parts in one neutral form, rendered for one LM, mixed in token shares."""

import pytest
from mixture_fixtures import make_mixture_run
from t2t_fixtures import tiny_text_tokenizer

from modeling_speechtext.data.mixture import MixtureConfig, build_mixture, load_part, render_segments
from modeling_speechtext.vocab import add_speech_tokens

K = 16


@pytest.fixture(scope="module")
def lm_tokenizer():
    tok = tiny_text_tokenizer()
    vocab = add_speech_tokens(None, tok, K)
    return tok, vocab


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_mixture_run(tmp_path_factory.mktemp("run"), K)


def test_parts_in_the_neutral_form(run_dir):
    text = load_part("text", MixtureConfig.from_dict({"parts": {"text": {"share": 1}}}).parts["text"], run_dir)
    assert text["id"] == ["d0", "d2"]  # the empty document is dropped
    parts = MixtureConfig.from_dict({"parts": {"asr": {"share": 1}, "tts": {"share": 1, "instruction": ""},
                                               "speech": {"share": 1, "max_speech_tokens": 5},
                                               "interleaved": {"share": 1}}}).parts  # fmt: skip
    asr = load_part("asr", parts["asr"], run_dir)[0]["segments"]
    assert [(s["modality"], s["loss"]) for s in asr] == [("text", False), ("speech", False), ("text", True)]
    assert asr[1]["speech_ids"] == [1, 2, 3] and asr[2]["text"] == " Mary went home."
    tts = load_part("tts", parts["tts"], run_dir)
    assert len(tts) == 5  # the row without text is dropped
    assert [(s["modality"], s["loss"]) for s in tts[0]["segments"]] == [("text", False), ("speech", True)]
    speech = load_part("speech", parts["speech"], run_dir)
    # one voice per sequence, at most 5 tokens unless one utterance is longer
    assert [s["segments"][0]["speech_ids"] for s in speech] == [[1, 2, 3, 4, 5], [10, 12], [6, 7, 8, 9, 11]]
    inter = load_part("interleaved", parts["interleaved"], run_dir)[0]["segments"]
    assert inter[0] == {"modality": "text", "text": "Mary went", "speech_ids": [], "loss": True}
    assert inter[1]["modality"] == "speech" and inter[1]["speech_ids"] == [3, 1, 4]  # read back with *its* tokenizer


def test_render_for_one_lm(lm_tokenizer):
    tok, vocab = lm_tokenizer
    segs = [
        {"modality": "speech", "text": "", "speech_ids": [0, 5], "loss": False},
        {"modality": "text", "text": " Mary", "speech_ids": [], "loss": True},
    ]
    out = render_segments(segs, tok, vocab)
    mary = tok(" Mary", add_special_tokens=False)["input_ids"]
    assert out["input_ids"] == [vocab.begin_of_audio_id, vocab.audio_offset, vocab.audio_offset + 5,
                                vocab.end_of_audio_id, *mary, tok.eos_token_id]  # fmt: skip
    assert out["completion_mask"] == [0, 0, 0, 0] + [1] * len(mary) + [1]
    with pytest.raises(ValueError, match="outside the codebook"):  # a speech-tokens set from another codebook
        render_segments([{"modality": "speech", "text": "", "speech_ids": [K], "loss": True}], tok, vocab)


def test_token_shares_become_example_probabilities(run_dir, lm_tokenizer):
    tok, vocab = lm_tokenizer
    cfg = {"parts": {"text": {"share": 0.5}, "asr": {"share": 0.5}, "tts": {"share": 0}}}
    mixed, info = build_mixture(cfg, run_dir, tok, vocab, seed=0)
    assert set(info) == {"text", "asr"}  # a zero share leaves the part out
    lt, la = info["text"]["mean_tokens"], info["asr"]["mean_tokens"]
    assert info["text"]["example_probability"] == pytest.approx((0.5 / lt) / (0.5 / lt + 0.5 / la), abs=1e-3)
    # every example of every part appears (all_exhausted), and only those parts
    assert {"d0", "d2"} <= set(mixed["id"]) and set(mixed["part"]) == {"text", "asr"}


def test_bad_mixtures_are_named(run_dir, lm_tokenizer, tmp_path):
    tok, vocab = lm_tokenizer
    with pytest.raises(ValueError, match="share must be a number >= 0"):
        MixtureConfig.from_dict({"parts": {"text": {"share": -0.1}}})
    with pytest.raises(ValueError, match="every share is 0"):
        MixtureConfig.from_dict({"parts": {"text": {"share": 0}, "asr": {"share": 0}}})
    with pytest.raises(ValueError, match="kind 'video'"):
        MixtureConfig.from_dict({"parts": {"video": {"share": 1}}})
    with pytest.raises(ValueError, match="unknown keys"):
        MixtureConfig.from_dict({"parts": {"text": {"share": 1, "shares": 2}}})
    with pytest.raises(FileNotFoundError, match="mixture part 'text'.*not found"):
        build_mixture({"parts": {"text": {"share": 1}}}, tmp_path, tok, vocab)
    with pytest.raises(FileNotFoundError, match="mixture part 'x'.*no .parquet"):
        build_mixture({"parts": {"x": {"kind": "interleaved", "share": 1, "source": str(tmp_path)}}}, run_dir, tok,
                      vocab)  # fmt: skip
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "  "}\n')
    with pytest.raises(ValueError, match="mixture part 'text': no usable example"):
        build_mixture({"parts": {"text": {"share": 1, "source": str(empty)}}}, run_dir, tok, vocab)
    with pytest.raises(ValueError, match=r"lacks columns \['speech_ids'\]"):
        build_mixture({"parts": {"asr": {"share": 1, "source": str(run_dir / "text_corpus" / "documents")}}},
                      run_dir, tok, vocab)  # fmt: skip


def test_streamed_parts_mix_too(run_dir, lm_tokenizer):
    tok, vocab = lm_tokenizer
    cfg = {"parts": {"text": {"share": 0.5}, "tts": {"share": 0.5}}, "streaming": True,
           "stopping_strategy": "first_exhausted"}  # fmt: skip
    mixed, info = build_mixture(cfg, run_dir, tok, vocab, seed=0)
    rows = list(mixed)
    assert rows and {r["part"] for r in rows} <= {"text", "tts"} and info["text"]["examples"] is None

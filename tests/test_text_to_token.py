import pytest
from t2t_fixtures import SENTENCES, plain_text_lm, tiny_t2t, tiny_text_tokenizer

from modeling_speechtext.evaluation.text_to_token import tts_wer
from modeling_speechtext.generation.text_to_token import (
    SynthesisConfig,
    TextToTokenSynthesizer,
    format_prompt,
)


@pytest.fixture(scope="module")
def synth():
    return tiny_t2t(codebook_size=32)


def test_batched_equals_one_by_one_and_is_seeded(synth):
    texts = SENTENCES + ["Hi."]
    batched = synth.synthesize(texts, batch_size=4, return_dict=True)
    single = synth.synthesize(texts, batch_size=1)
    assert batched.speech_ids == single  # per-row generators: a row's tokens do not depend on its batch
    assert batched.speech_ids == synth.synthesize(texts, batch_size=7)
    assert batched.speech_ids == synth.synthesize(texts, batch_size=1, cache_implementation=None)  # dynamic cache
    assert all(0 <= t < 32 for ids in batched.speech_ids for t in ids)
    assert batched.num_tokens == sum(map(len, single)) > 0
    other_seed = synth.synthesize(texts, seed=1)
    assert other_seed != single
    greedy = synth.synthesize(texts, do_sample=False, batch_size=3)
    assert greedy == synth.synthesize(texts, do_sample=False, batch_size=1)
    explicit = synth.synthesize(texts[:2], seeds=[5, 5])
    assert explicit == synth.synthesize(texts[:2], seeds=[5, 5], batch_size=1)


def test_runaway_generation_is_cut_and_flagged(synth):
    texts = ["Mary went to the kitchen and then to the garden."] * 3
    cfg = synth.config
    out = synth.synthesize(texts, return_dict=True, max_tokens_per_char=0.1, min_token_budget=2)
    budget = SynthesisConfig(max_tokens_per_char=0.1, min_token_budget=2).token_budget(texts[0])
    assert budget == 5
    for ids, cut in zip(out.speech_ids, out.truncated):
        assert len(ids) <= budget
        assert not cut or len(ids) == budget
    # a random model rarely says <|end_of_audio|> early: with a tiny budget most rows are flagged
    assert sum(out.truncated) >= 1
    assert synth.config == cfg  # per-call overrides do not stick


def test_save_load_roundtrip_and_bad_inputs(synth, tmp_path):
    synth.save_pretrained(tmp_path / "t2t")
    loaded = TextToTokenSynthesizer.from_pretrained(tmp_path / "t2t")
    assert loaded.config == synth.config and loaded.vocab == synth.vocab
    assert loaded.synthesize(SENTENCES[:3]) == synth.synthesize(SENTENCES[:3])
    assert TextToTokenSynthesizer.from_pretrained(tmp_path / "t2t", temperature=0.5).config.temperature == 0.5
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        synth.synthesize(["ok", "   "])
    with pytest.raises(ValueError, match="unknown synthesis settings"):
        TextToTokenSynthesizer.from_pretrained(tmp_path / "t2t", temprature=0.5)
    with pytest.raises(FileNotFoundError):
        TextToTokenSynthesizer.from_pretrained(tmp_path / "nothing")
    # a plain text LM (no speech tokens) is refused with the vocabulary message
    tok = tiny_text_tokenizer()
    lm = plain_text_lm(tok)
    lm.save_pretrained(tmp_path / "text_lm")
    tok.save_pretrained(tmp_path / "text_lm")
    with pytest.raises(ValueError, match="lacks the speech tokens"):
        TextToTokenSynthesizer.from_pretrained(tmp_path / "text_lm")


def test_prompt_format_and_tts_wer():
    assert format_prompt("  Hi there. ") == "Hi there.<|begin_of_audio|>"

    def transcribe(batch):  # a fake ASR head: speech id 0 = "mary", 1 = "went", 2 = garbage
        return [" ".join({0: "mary", 1: "went"}.get(t, "x") for t in ids) for ids in batch]

    out = tts_wer(transcribe, ["Mary went", "Mary"], [[0, 1], [2]], real=[[0, 1], [0]])
    assert out["real_token_wer"] == 0 and out["tts_wer"] == pytest.approx(1 / 3)
    assert out["tts_over_real"] == float("inf")
    with pytest.raises(ValueError, match="empty"):
        tts_wer(transcribe, [""], [[0]])


def test_row_budget_stops_each_row_at_its_own_budget():
    import torch

    from modeling_speechtext.generation.text_to_token import _row_budget_criterion

    def batch(n_new):  # prompt of 2 tokens; rows 0-2 closed with <|end_of_audio|> (id 9) after 2 speech tokens
        rows = [[1, 1] + [5, 5, 9] + [0] * (n_new - 3) for _ in range(3)] + [[1, 1] + [5] * n_new]
        return torch.tensor(rows)

    plain = _row_budget_criterion([100, 100, 100, 8], 2)
    assert plain(batch(6), None).tolist() == [False] * 4
    assert plain(batch(9), None).tolist() == [False, False, False, True]  # row 3 reached its budget + 1
    # however long a row runs past its batch-mates, only its own budget stops it (batch-invariant output)
    assert not _row_budget_criterion([100] * 4, 2)(batch(60), None).any()


def test_beam_search_is_deterministic_batch_independent_and_bounded(synth):
    import torch

    texts = SENTENCES
    # float64: a random model's beams are near-ties that float32 rounding of padded batches can flip
    synth64 = tiny_t2t(codebook_size=32)
    synth64.model.to(torch.float64)
    beams = synth64.synthesize(texts, do_sample=False, num_beams=3, batch_size=4, return_dict=True)
    assert beams.speech_ids == synth64.synthesize(texts, do_sample=False, num_beams=3, batch_size=1)
    assert beams.speech_ids == synth64.synthesize(texts, do_sample=False, num_beams=3, batch_size=4)
    budgets = [synth.config.token_budget(t) for t in texts]
    assert all(0 < len(ids) <= b for ids, b in zip(beams.speech_ids, budgets))
    assert all(0 <= t < 32 for ids in beams.speech_ids for t in ids)
    with pytest.raises(ValueError, match="do_sample=False"):
        synth.synthesize(texts, num_beams=2)  # the fixture samples
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        SynthesisConfig(num_beams=0)


def test_voice_conditioning(tmp_path):
    from modeling_speechtext.generation.text_to_token import add_voice_tokens, tokenizer_voices, voice_token

    synth = tiny_t2t(voices=["flite:rms", "espeak:en+f2"])
    assert synth.voices == ["espeak:en+f2", "flite:rms"] and synth.config.voice == "espeak:en+f2"
    assert format_prompt(" Hi. ", "flite:rms") == voice_token("flite:rms") + "Hi.<|begin_of_audio|>"
    prompt = synth.encode_prompts(["Hi."], "flite:rms")[0]
    assert prompt[0] == synth.tokenizer.convert_tokens_to_ids(voice_token("flite:rms"))  # one token, not pieces
    a = synth.synthesize(SENTENCES, do_sample=False)
    b = synth.synthesize(SENTENCES, do_sample=False, voice="flite:rms")
    assert a != b  # the voice token changes the prompt, so a random model answers differently
    synth.save_pretrained(tmp_path / "t2t")
    loaded = TextToTokenSynthesizer.from_pretrained(tmp_path / "t2t")
    assert loaded.voices == synth.voices and loaded.synthesize(SENTENCES, do_sample=False) == a
    with pytest.raises(ValueError, match="not a voice of this text-to-token model"):
        synth.synthesize(["Hi."], voice="piper:joe")
    with pytest.raises(ValueError, match="voice-conditioned: choose a voice"):
        synth.synthesize(["Hi."], voice=None)
    plain = tiny_t2t()
    assert plain.voices == [] and tokenizer_voices(plain.tokenizer) == []
    with pytest.raises(ValueError, match="trained without voice conditioning"):
        plain.synthesize(["Hi."], voice="flite:rms")
    with pytest.raises(ValueError, match="voice names"):
        add_voice_tokens(plain.tokenizer, ["bad|>name"])


def test_continuous_batching_gives_the_tokens_of_generate_batches(synth):
    """Rows leaving and joining a running batch keep their own generators: the tokens of `generate()` and of batch 1."""
    texts = SENTENCES + ["Mary went to the kitchen and then to the garden."]
    for settings in ({}, {"do_sample": False}, {"temperature": 0.7, "top_k": 5}):
        ref = synth.synthesize(texts, return_dict=True, continuous_batching=False, batch_size=4, **settings)
        for batch_size, refill_below in ((2, 0.5), (3, 0.0), (3, 1.0), (64, 0.5)):
            cont = synth.synthesize(
                texts, return_dict=True, batch_size=batch_size, refill_below=refill_below, **settings
            )
            assert cont.speech_ids == ref.speech_ids and cont.truncated == ref.truncated
        assert ref.speech_ids == synth.synthesize(texts, batch_size=1, **settings)
    with pytest.raises(ValueError, match="refill_below"):
        SynthesisConfig(refill_below=1.5)


def test_minimum_bayes_risk_returns_the_consensus_candidate(synth):
    from rapidfuzz.distance import Levenshtein

    from modeling_speechtext.generation.text_to_token import stable_seed

    texts = SENTENCES
    out = synth.synthesize(texts, do_sample=False, mbr_samples=4, mbr_temperature=1.5, return_dict=True)
    assert out.stats["candidates_per_text"] == 5
    # the candidates: the greedy decode, then 4 seeded samples per text
    seeds = [stable_seed(synth.config.seed, t) for t in texts]
    cands = [synth.synthesize(texts, do_sample=False)] + [
        synth.synthesize(texts, temperature=1.5, seeds=[stable_seed(s, "mbr", k) for s in seeds]) for k in range(4)
    ]
    assert any(c[i] != cands[0][i] for c in cands[1:] for i in range(len(texts)))  # the samples do differ
    for i, chosen in enumerate(out.speech_ids):
        options = [c[i] for c in cands]
        risk = [sum(Levenshtein.normalized_distance(a, b) for b in options) for a in options]
        assert chosen in options and risk[options.index(chosen)] == min(risk)
    # deterministic and independent of the batch it is decoded in; beams join the candidates when asked for
    assert out.speech_ids == synth.synthesize(texts, do_sample=False, mbr_samples=4, mbr_temperature=1.5, batch_size=1)
    beams = synth.synthesize(texts, do_sample=False, num_beams=2, mbr_samples=4, mbr_temperature=1.5, return_dict=True)
    assert beams.stats["candidates_per_text"] == 6
    with pytest.raises(ValueError, match="mbr_samples must be >= 0"):
        synth.synthesize(texts, do_sample=False, mbr_samples=-1)
    with pytest.raises(ValueError, match="set do_sample=False"):
        synth.synthesize(texts, mbr_samples=2)  # the fixture samples: MBR is built around the greedy decode


def test_runaway_retries_redraw_only_the_cut_texts(synth):
    texts = [f"{s} {s}" for s in SENTENCES] * 2  # long enough that the random model rarely ends in time
    tight = {"max_tokens_per_char": 0.08, "min_token_budget": 2, "do_sample": False}
    first = synth.synthesize(texts, return_dict=True, **tight)
    assert sum(first.truncated) >= 3  # the premise: greedy runs away on most of them
    out = synth.synthesize(texts, return_dict=True, runaway_retries=30, retry_temperature=2.0, **tight)
    assert out.stats["runaways_before_retries"] == sum(first.truncated)
    assert sum(out.truncated) < sum(first.truncated)  # some re-draws ended with <|end_of_audio|>
    for i, cut in enumerate(first.truncated):
        if not cut:  # a text that ended the first time is never touched
            assert out.speech_ids[i] == first.speech_ids[i] and not out.truncated[i]
        elif not out.truncated[i]:  # a rescued one: a different, complete decode within the budget
            assert out.speech_ids[i] != first.speech_ids[i]
            assert len(out.speech_ids[i]) <= SynthesisConfig(**tight).token_budget(texts[i])
    # re-draws are seeded per text: the same result in any batch, and again on a second call
    assert out.speech_ids == synth.synthesize(texts, batch_size=1, runaway_retries=30, retry_temperature=2.0, **tight)
    with pytest.raises(ValueError, match="runaway_retries must be >= 0"):
        synth.synthesize(texts, runaway_retries=-1)

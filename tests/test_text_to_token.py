import contextlib
import json
import textwrap

import pytest
from remote_code import run_without_package
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


def plain_greedy(synth, texts, voice=None):
    """Greedy speech ids by plain `generate()` with the shipped rule, one text at a time (no synthesizer code)."""
    from dataclasses import replace

    import torch

    from modeling_speechtext.models.text_to_token.custom_generate.generate import generate

    config = replace(synth.config, do_sample=False, voice=voice)
    generation_config = config.generation_config(synth.vocab, synth.pad_token_id, 512)
    out = []
    for text, prompt in zip(texts, synth.encode_prompts(texts, voice)):
        ids = generate(synth.model, input_ids=torch.tensor([prompt]), generation_config=generation_config,
                       tokenizer=synth.tokenizer)[0, len(prompt):].tolist()  # fmt: skip
        speech = synth.vocab.token_to_speech_ids(
            ids[: ids.index(synth.vocab.end_of_audio_id)] if synth.vocab.end_of_audio_id in ids else ids
        )
        out.append(speech[: config.token_budget(text)])  # a runaway keeps its budget, as the synthesizer does
    return out


def test_batched_equals_one_by_one_and_is_seeded(synth):
    texts = SENTENCES + ["Hi."]
    batched = synth.synthesize(texts, batch_size=4, return_dict=True)
    single = synth.synthesize(texts, batch_size=1)
    assert batched.speech_ids == single  # per-row generators: a row's tokens do not depend on its batch
    assert batched.speech_ids == synth.synthesize(texts, batch_size=7)
    assert all(0 <= t < 32 for ids in batched.speech_ids for t in ids)
    assert batched.num_tokens == sum(map(len, single)) > 0
    other_seed = synth.synthesize(texts, seed=1)
    assert other_seed != single
    greedy = synth.synthesize(texts, do_sample=False, batch_size=3)
    assert greedy == synth.synthesize(texts, do_sample=False, batch_size=1)
    assert greedy == plain_greedy(synth, texts)  # the synthesizer's greedy is plain generate() with the rule
    explicit = synth.synthesize(texts[:2], seeds=[5, 5])
    assert explicit == synth.synthesize(texts[:2], seeds=[5, 5], batch_size=1)


@contextlib.contextmanager
def end_of_audio_below_best_speech_token(synth, margin: float):
    """Make the model score `<|end_of_audio|>` `margin` below its best speech token at every step.

    A premise by construction instead of a hope about a random model: a huge margin never ends a span; a small one
    never ends it greedily, while sampling at a high temperature sometimes does.
    """
    vocab = synth.vocab
    speech = slice(vocab.audio_offset, vocab.audio_offset + vocab.codebook_size)

    def hook(module, inputs, logits):
        logits = logits.clone()
        logits[..., vocab.end_of_audio_id] = logits[..., speech].max(dim=-1).values - margin
        return logits

    handle = synth.model.lm_head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_runaway_generation_is_cut_and_flagged(synth):
    texts = ["Mary went to the kitchen and then to the garden.", "Hi."]
    cfg = synth.config
    tight = SynthesisConfig(max_tokens_per_char=0.1, min_token_budget=2)
    budgets = [tight.token_budget(t) for t in texts]
    assert budgets == [5, 2]
    with end_of_audio_below_best_speech_token(synth, margin=1e4):  # never ends: every row is a runaway
        for path in ({}, {"continuous_batching": False}):
            out = synth.synthesize(texts, return_dict=True, max_tokens_per_char=0.1, min_token_budget=2, **path)
            assert out.truncated == [True, True]
            assert [len(ids) for ids in out.speech_ids] == budgets  # cut exactly at each row's own budget
    ended = synth.synthesize(texts, return_dict=True, max_tokens_per_char=100, min_token_budget=2)
    assert not any(ended.truncated) or all(
        len(i) == b for i, b, c in zip(ended.speech_ids, budgets, ended.truncated) if c
    )
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
    with pytest.raises(FileNotFoundError, match=r"no text-to-token model here \(config.json missing\)"):
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

    from modeling_speechtext.generation.speech_sampling import row_budget_criterion as _row_budget_criterion

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
    # what the model answers to the voice's own prompt, decoded by plain generate() with the shipped rule
    assert b == plain_greedy(synth, SENTENCES, "flite:rms") and a == plain_greedy(synth, SENTENCES, "espeak:en+f2")
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
    texts = [f"{s} {s}" for s in SENTENCES] * 2
    tight = {"max_tokens_per_char": 0.08, "min_token_budget": 2, "do_sample": False}
    with end_of_audio_below_best_speech_token(synth, margin=0.5):  # greedy never ends; hot samples sometimes do
        runaway = synth.synthesize(texts, return_dict=True, **tight)
        assert all(runaway.truncated)
        out = synth.synthesize(texts, return_dict=True, runaway_retries=30, retry_temperature=2.0, **tight)
        assert out.stats["runaways_before_retries"] == len(texts)
        assert 0 < sum(not cut for cut in out.truncated)  # some re-draws ended with <|end_of_audio|>
        for i, cut in enumerate(out.truncated):
            if not cut:  # a rescued one: a different, complete decode within the budget
                assert out.speech_ids[i] != runaway.speech_ids[i]
                assert len(out.speech_ids[i]) <= SynthesisConfig(**tight).token_budget(texts[i])
        # re-draws are seeded per text: the same result in any batch, and again on a second call
        again = synth.synthesize(texts, batch_size=1, runaway_retries=30, retry_temperature=2.0, **tight)
        assert again == out.speech_ids
    # texts that end are never re-drawn; texts that can never end stay flagged with their first decode
    for margin, cut in ((-1e4, False), (1e4, True)):
        with end_of_audio_below_best_speech_token(synth, margin=margin):
            first = synth.synthesize(texts, return_dict=True, **tight)
            out = synth.synthesize(texts, return_dict=True, runaway_retries=3, retry_temperature=2.0, **tight)
        assert first.truncated == out.truncated == [cut] * len(texts)
        assert out.speech_ids == first.speech_ids
        assert all(
            len(ids) == (SynthesisConfig(**tight).token_budget(t) if cut else 1)
            for ids, t in zip(out.speech_ids, texts)
        )
    with pytest.raises(ValueError, match="runaway_retries must be >= 0"):
        synth.synthesize(texts, runaway_retries=-1)


def test_static_cache_is_used_and_gives_the_tokens_of_the_dynamic_cache(synth):
    """`cache_implementation="static"` reaches `generate()` (the continuous-batching path has its own cache)."""
    texts = SENTENCES
    seen = []
    generate = synth.model.generate

    def spy(*args, generation_config=None, **kwargs):
        seen.append(generation_config.cache_implementation)
        return generate(*args, generation_config=generation_config, **kwargs)

    dynamic = synth.synthesize(texts, continuous_batching=False, batch_size=4)
    synth.model.generate = spy
    try:
        static = synth.synthesize(texts, continuous_batching=False, batch_size=4, cache_implementation="static")
    finally:
        del synth.model.generate
    assert seen == ["static", "static"]  # two batches of at most 4, each on a preallocated cache
    assert static == dynamic == synth.synthesize(texts)  # = the continuous-batching tokens too


def test_saved_generation_config_describes_the_synthesizer(synth, tmp_path):
    synth.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    vocab, cfg = synth.vocab, synth.config
    assert saved["eos_token_id"] == vocab.end_of_audio_id and saved["pad_token_id"] == synth.pad_token_id
    assert saved["do_sample"] is True and saved["temperature"] == cfg.temperature and saved["top_k"] == 0
    assert saved["max_length"] == 512  # the model's positions: the hard bound; the per-text budget below
    assert (saved["max_tokens_per_char"], saved["min_token_budget"]) == (cfg.max_tokens_per_char, cfg.min_token_budget)
    assert (saved["speech_token_offset"], saved["speech_codebook_size"]) == (vocab.audio_offset, 32)
    assert (tmp_path / "custom_generate" / "generate.py").is_file()
    synth.config = SynthesisConfig(**{**vars(cfg), "do_sample": False, "num_beams": 3})
    try:
        synth.save_settings(tmp_path)  # settings change (the recipe tunes them): both files follow
    finally:
        synth.config = cfg
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["do_sample"] is False and saved["num_beams"] == 3 and "temperature" not in saved
    assert json.loads((tmp_path / "synthesis_config.json").read_text())["num_beams"] == 3


FRESH_PROCESS = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
path, texts = sys.argv[1], json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
inputs = tokenizer([t + "<|begin_of_audio|>" for t in texts], return_tensors="pt", padding=True,
                   add_special_tokens=False)
width = inputs["input_ids"].shape[1]
result = {}
plain = AutoModelForCausalLM.from_pretrained(path)  # no trust_remote_code: no speech rule
torch.manual_seed(0)
result["plain"] = plain.generate(**inputs, max_new_tokens=20)[:, width:].tolist()
model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)
result["generate_module"] = model.generate.func.__module__
for name, settings in {"sampled": {}, "greedy": {"do_sample": False}}.items():
    torch.manual_seed(0)
    result[name] = model.generate(**inputs, tokenizer=tokenizer, **settings)[:, width:].tolist()
scope = {}
exec(sys.argv[3], scope)  # the model card's plain-transformers snippet, as a user would paste it
result["card"] = scope["speech_ids"]
print(json.dumps(result))
"""


def card_snippet(path) -> str:
    """The plain-transformers part of the text-to-token card's usage block, pointed at `path`."""
    from modeling_speechtext.hub.model_cards import text_to_token_card

    card = text_to_token_card({"codebook_size": 32}, "llama")
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    plain = code.split("# or, with the speechtext package", 1)[0]
    assert "trust_remote_code=True" in plain and "tokenizer=tokenizer" in plain
    return plain.replace("path/or/repo", str(path))


def test_plain_generate_of_a_saved_folder_writes_speech_tokens_only(synth, tmp_path):
    """The folder alone (fresh process, package not importable) + `trust_remote_code=True`: speech, then the end."""
    synth.save_pretrained(tmp_path / "t2t")
    texts = SENTENCES
    proc = run_without_package(
        textwrap.dedent(FRESH_PROCESS), tmp_path, args=(str(tmp_path / "t2t"), json.dumps(texts),
        card_snippet(tmp_path / "t2t")), timeout=300, HF_MODULES_CACHE=str(tmp_path / "modules"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    vocab, pad = synth.vocab, synth.pad_token_id
    speech = set(vocab.speech_token_range)
    # the premise (seeded): without the rule, this untrained model writes text tokens into the speech span
    assert any(t not in speech and t not in (vocab.end_of_audio_id, pad) for row in result["plain"] for t in row)
    assert result["generate_module"].startswith("transformers_modules"), result["generate_module"]
    budgets = [synth.config.token_budget(t) + 1 for t in texts]
    for name in ("sampled", "greedy"):
        for row, limit in zip(result[name], budgets):
            end = next((i for i, t in enumerate(row) if t not in speech), len(row))  # the speech span
            assert 0 < end <= limit, (name, row)  # at least one speech token, at most the text's budget (+1)
            closed = end < len(row) and row[end] == vocab.end_of_audio_id
            assert closed or end == limit, (name, row)  # ends with <|end_of_audio|>, or is cut at the budget
            assert all(t == pad for t in row[end + closed :]), (name, row)  # then padding only
    # greedy plain generate in a batch = the synthesizer's greedy decode of the same texts
    greedy = [vocab.token_to_speech_ids(row)[: b - 1] for row, b in zip(result["greedy"], budgets)]
    assert greedy == synth.synthesize(texts, do_sample=False)
    card = result["card"]  # the card's two texts: codebook ids within each text's budget
    card_budgets = [synth.config.token_budget(t) + 1 for t in ("john went to the kitchen", "where is mary")]
    assert [0 < len(ids) <= b for ids, b in zip(card, card_budgets)] == [True, True]
    assert all(0 <= t < 32 for ids in card for t in ids)

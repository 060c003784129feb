"""The streaming-thoughts layout and the logits processor that enforces it (issue 22)."""

from __future__ import annotations

import random

import pytest
import torch

from modeling_speechtext.models.speech_text.layout_speech_text import StreamingThoughtsLayout
from modeling_speechtext.models.speech_text.logits_process_speech_text import StreamingThoughtsLogitsProcessor

# a toy vocabulary: text 0..19, eos 20, boa 21, eoa 22, role marker 23, speech 24..39
EOS, BOA, EOA, ROLE, OFFSET, K, VOCAB = 20, 21, 22, 23, 24, 16, 40


def make_layout(text_chunk=3, speech_chunk=5):
    return StreamingThoughtsLayout(OFFSET, K, BOA, EOA, EOS, text_chunk, speech_chunk)


def test_build_alternates_chunks_and_parse_recovers_both_streams():
    lay = make_layout(3, 5)
    text, speech = list(range(1, 8)), [OFFSET + i % K for i in range(14)]  # 7 text, 14 speech
    ids = lay.build(text, speech)
    assert ids == [1, 2, 3, BOA, *speech[:5], EOA, 4, 5, 6, BOA, *speech[5:10], EOA, 7, BOA, *speech[10:], EOA, EOS]
    t, s = lay.parse(ids)
    assert t == text and s == [x - OFFSET for x in speech]
    assert [k for k, _ in lay.chunks(text, speech)] == ["text", "speech"] * 3


def test_build_exact_multiple_of_text_chunk_ends_with_an_empty_text_chunk():
    lay = make_layout(3, 5)
    ids = lay.build([1, 2, 3], [OFFSET] * 7)
    assert ids == [1, 2, 3, BOA, *[OFFSET] * 5, EOA, BOA, OFFSET, OFFSET, EOA, EOS]


def test_build_refuses_what_the_processor_could_not_generate():
    lay = make_layout(3, 5)
    with pytest.raises(ValueError, match="too few"):
        lay.build([1, 2, 3, 4], [OFFSET] * 5)  # one full text chunk needs 5 speech + at least 1 more
    with pytest.raises(ValueError, match="speech token or a marker"):
        lay.build([1, OFFSET], [OFFSET] * 3)
    with pytest.raises(ValueError, match="only speech tokens"):
        lay.build([1], [])
    with pytest.raises(ValueError, match="distinct"):
        StreamingThoughtsLayout(OFFSET, K, BOA, BOA, EOS)
    with pytest.raises(ValueError, match="text_chunk"):
        StreamingThoughtsLayout(OFFSET, K, BOA, EOA, EOS, text_chunk=0)


def test_next_allowed_rejects_a_broken_turn():
    lay = make_layout(3, 5)
    with pytest.raises(ValueError, match="text slot"):
        lay.next_allowed([1, OFFSET])
    with pytest.raises(ValueError, match="speech slot"):
        lay.next_allowed([1, 2, 3, BOA, OFFSET, 5])
    with pytest.raises(ValueError, match="speech slot"):  # a full text chunk's speech chunk cannot end early
        lay.next_allowed([1, 2, 3, BOA, OFFSET, EOA])


def _generate(processor, rng: torch.Generator, steps: int) -> list[int]:
    """Sample `steps` tokens from random logits through the processor (one row, prompt of 2 tokens)."""
    ids = torch.tensor([[ROLE, 5]])
    for _ in range(steps):
        scores = torch.randn(1, VOCAB, generator=rng) * 4
        scores = processor(ids, scores)
        probs = torch.softmax(scores, -1)
        nxt = torch.multinomial(probs, 1, generator=rng)
        ids = torch.cat([ids, nxt], dim=1)
        if nxt.item() == EOS:
            break
    return ids[0, 2:].tolist()


@pytest.mark.parametrize("mode", ["interleaved", "text", "speech"])
def test_processor_never_emits_a_token_of_the_wrong_modality(mode):
    """Property test: random logits, every chunk size 1..6, many seeds. Every sampled turn is a valid prefix of
    the layout (`next_allowed` raises on any violation), holds no suppressed id, and a finished one has the
    modality the mode asks for."""
    rng = torch.Generator().manual_seed(0)
    finished = 0
    for trial in range(120):
        text_chunk, speech_chunk = 1 + trial % 6, 1 + (trial // 6) % 6
        lay = make_layout(text_chunk, speech_chunk)
        proc = StreamingThoughtsLogitsProcessor(lay, prompt_length=2, mode=mode, suppress_ids=[ROLE])
        turn = _generate(proc, rng, steps=60)
        lay.next_allowed(turn, mode)  # raises on a token in the wrong slot
        assert ROLE not in turn
        text, speech = lay.parse(turn)
        if turn and turn[-1] == EOS:
            finished += 1
            if mode == "text":
                assert speech == [] and BOA not in turn and EOA not in turn
            elif mode == "speech":
                assert text == [] and speech and turn[0] == BOA
            else:
                assert speech and turn[-2] == EOA
                rebuilt = lay.build(text, [OFFSET + s for s in speech])
                assert rebuilt == turn  # generation and `build` agree on the layout exactly
    assert finished > 30  # the property was checked on complete turns, not only prefixes


def test_processor_batches_rows_at_different_positions_and_ignores_pad_after_eos():
    lay = make_layout(2, 3)
    proc = StreamingThoughtsLogitsProcessor(lay, prompt_length=1)
    ids = torch.tensor([
        [ROLE, 1, 2],          # full text chunk: must open speech
        [ROLE, 1, BOA],        # short text chunk -> final speech: speech only (no eoa before one token)
        [ROLE, BOA, OFFSET],   # final speech with one token: speech or eoa
        [ROLE, 1, EOS],        # done in text mode would be legal; here eos in a text slot ends the row: eos only
    ])  # fmt: skip
    out = proc(ids, torch.zeros(4, VOCAB))
    allowed = [set(torch.nonzero(row > torch.finfo(row.dtype).min).flatten().tolist()) for row in out]
    speech = set(range(OFFSET, OFFSET + K))
    assert allowed[0] == {BOA}
    assert allowed[1] == speech
    assert allowed[2] == speech | {EOA}
    assert allowed[3] == {EOS}


def test_processor_with_generate_of_a_real_model_keeps_the_layout():
    """Through `generate` (sampling and beams): the processor composes with transformers' own machinery."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=EOS,
                                         pad_token_id=EOS)).eval()  # fmt: skip
    lay = make_layout(3, 4)
    prompt = torch.tensor([[ROLE, 3, 4], [ROLE, 7, 8]])
    for kwargs in ({"do_sample": True}, {"num_beams": 2, "do_sample": False}):
        proc = StreamingThoughtsLogitsProcessor(lay, prompt_length=3, suppress_ids=[ROLE])
        out = model.generate(prompt, logits_processor=[proc], max_new_tokens=30, **kwargs)
        for row in out[:, 3:].tolist():
            lay.next_allowed(row[: row.index(EOS) + 1] if EOS in row else row)
            assert ROLE not in row


def test_random_turns_round_trip_through_build_and_parse():
    rnd = random.Random(1)
    for _ in range(200):
        lay = make_layout(rnd.randint(1, 13), rnd.randint(1, 26))
        text = [rnd.randrange(20) for _ in range(rnd.randint(0, 40))]
        need = (len(text) // lay.text_chunk) * lay.speech_chunk + 1
        speech = [OFFSET + rnd.randrange(K) for _ in range(need + rnd.randint(0, 30))]
        ids = lay.build(text, speech)
        assert lay.next_allowed(ids) == "end"
        assert lay.parse(ids) == (text, [s - OFFSET for s in speech])


def test_processor_on_finished_rows_padded_with_another_pad_token():
    """`generate` pads a finished row with pad_token_id (here not eos): the row stays finished, no error."""
    lay = make_layout(2, 3)
    proc = StreamingThoughtsLogitsProcessor(lay, prompt_length=1, suppress_ids=[ROLE])
    ids = torch.tensor([[ROLE, BOA, OFFSET, EOA, EOS, ROLE, ROLE], [ROLE, 1, 2, BOA, OFFSET, OFFSET, OFFSET]])
    out = proc(ids, torch.zeros(2, VOCAB))
    allowed = [set(torch.nonzero(row > torch.finfo(row.dtype).min).flatten().tolist()) for row in out]
    assert allowed[0] == {EOS}
    assert allowed[1] == {EOA}  # a full text chunk's speech chunk is exactly speech_chunk long


def test_greedy_text_keeps_only_the_best_allowed_token_in_text_slots_and_every_speech_token_elsewhere():
    lay = make_layout(2, 3)
    proc = StreamingThoughtsLogitsProcessor(lay, prompt_length=1, suppress_ids=[ROLE], greedy_text=True)
    ids = torch.tensor([[ROLE, 1], [ROLE, BOA]])  # a text slot (text or <boa>), a final-speech slot
    scores = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(0))
    scores[0, ROLE] = scores[0, OFFSET] = 100.0  # forbidden tokens score highest: greedy must still pick text
    out = proc(ids, scores.clone())
    finite = [set(torch.nonzero(row > torch.finfo(row.dtype).min).flatten().tolist()) for row in out]
    allowed_text = [t for t in range(VOCAB) if lay.is_text(t) and t != ROLE] + [BOA]
    assert finite[0] == {max(allowed_text, key=lambda t: scores[0, t].item())}  # one survivor, the best allowed
    assert finite[1] == set(range(OFFSET, OFFSET + K))  # speech slot: all speech tokens stay for sampling
    torch.manual_seed(0)
    sampled = [torch.multinomial(out[0].softmax(-1), 1).item() for _ in range(20)]
    assert set(sampled) == finite[0]

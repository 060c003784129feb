"""Spoken QA scoring: the prompt layout, and that a model which knows the answers scores 100% in every modality."""

import pytest
from lm_fixtures import memorise, speech_text_tokenizer, tiny_llama

from modeling_speechtext.evaluation.spoken_qa import layout_ids, prompt_ids, qa_sequences, spoken_qa_accuracy

K = 16
ITEMS = [
    {"id": "a", "task": 1, "story": "Mary went to the kitchen.", "question": "Where is Mary?", "answer": "kitchen",
     "story_speech": [[1, 2, 3]], "question_speech": [4, 5]},
    {"id": "b", "task": 1, "story": "John moved to the garden.", "question": "Where is John?", "answer": "garden",
     "story_speech": [[6, 7, 8]], "question_speech": [4, 6]},
]  # fmt: skip
ANSWERS = {1: ["kitchen", "garden"]}
SPOKEN = {"kitchen": [9, 10], "garden": [11, 12]}


@pytest.fixture(scope="module")
def lm():
    return speech_text_tokenizer(K)


def test_prompt_layout_is_the_interleaved_rendering(lm):
    from modeling_speechtext.data.mixture import render_segments

    tok, vocab = lm
    text = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    # a spoken line takes no "\n" before it (the interleaved builder drops the whitespace before a span), a text
    # line after speech keeps its "\n", consecutive spoken lines are one block
    assert prompt_ids([[1, 2], "John left."], [3], tok, vocab) == [*vocab.wrap([1, 2]), *text("\nJohn left."),
                                                                   *vocab.wrap([3])]  # fmt: skip
    assert prompt_ids([[1, 2]], [3], tok, vocab) == vocab.wrap([1, 2, 3])
    assert prompt_ids([[1, 2]], [3], tok, vocab, open_end=True) == [vocab.begin_of_audio_id,
                                                                    *vocab.speech_to_token_ids([1, 2, 3])]  # fmt: skip
    segments = [{"modality": "text", "text": "Mary went to the kitchen.", "speech_ids": [], "loss": True},
                {"modality": "speech", "text": "", "speech_ids": [4, 5], "loss": True},
                {"modality": "text", "text": "\nJohn left.", "speech_ids": [], "loss": True}]  # fmt: skip
    rendered = render_segments(segments, tok, vocab, eos=False)["input_ids"]
    assert layout_ids(["Mary went to the kitchen.", [4, 5], "John left."], tok, vocab) == rendered
    with pytest.raises(ValueError, match="no speech tokens"):
        prompt_ids([[]], [3], tok, vocab)


@pytest.mark.parametrize("taught", [("T->T", "S->T", "T->S"), ("S->S",)])
def test_a_model_that_knows_scores_full_marks_and_an_untrained_one_does_not(lm, taught):
    """After a spoken question the interleaved layout lets the LM either close the block and answer in text (S->T)
    or keep speaking (S->S): one model memorising both for the same prompt cannot be sure of either, so S->S is
    taught to its own model."""
    tok, vocab = lm
    model = tiny_llama(tok)
    kw = {"answer_speech": SPOKEN, "transcribe": lambda seqs: [next((a for a, s in SPOKEN.items() if s == q), "")
                                                                for q in seqs]}  # fmt: skip
    before = spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, taught, **kw)
    assert min(before[m][1]["generated"] for m in taught) < 1.0  # the premise: untrained, it cannot
    seqs = []
    for it in ITEMS:
        for m in taught:
            prompt, cont = qa_sequences(it, m, tok, vocab, SPOKEN[it["answer"]])
            seqs.append(prompt + cont + [tok.eos_token_id])
    memorise(model, seqs, epochs=80, lr=1e-2)
    after = spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, taught, **kw)
    for m in taught:
        assert after[m][1] == {"ranked": 1.0, "generated": 1.0, "chance": 0.5, "n": 2}, m


def test_answer_speech_is_looked_up_in_the_items_voice(lm):
    tok, vocab = lm
    model = tiny_llama(tok)
    items = [{**it, "voice": v} for it, v in zip(ITEMS, ("v1", "v2"))]
    per_voice = {"v1": SPOKEN, "v2": {"kitchen": [13, 14], "garden": [15]}}
    spoken_qa_accuracy(model, tok, vocab, items, ANSWERS, ("T->S",), answer_speech=per_voice,
                       transcribe=lambda seqs: [""] * len(seqs))  # fmt: skip
    # a manifest with audio only (no text): S->T needs none, T->T says what is missing
    audio_only = [{k: v for k, v in it.items() if k not in ("story", "question")} for it in ITEMS]
    assert spoken_qa_accuracy(model, tok, vocab, audio_only, ANSWERS, ("S->T",))["S->T"][1]["n"] == 2
    with pytest.raises(ValueError, match="needs the story and question as text"):
        spoken_qa_accuracy(model, tok, vocab, audio_only, ANSWERS, ("T->T",))
    with pytest.raises(ValueError, match="in voice 'v2'"):
        spoken_qa_accuracy(model, tok, vocab, items, ANSWERS, ("T->S",), answer_speech={"v1": SPOKEN},
                           transcribe=lambda seqs: [""] * len(seqs))  # fmt: skip

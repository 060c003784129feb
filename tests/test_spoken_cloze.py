"""Spoken story cloze: the swapped-ending pairing, the 50% context-free control, and that a model which knows
the stories scores full marks in every modality while an untrained one does not."""

import pytest
from lm_fixtures import memorise, speech_text_tokenizer, tiny_llama

from modeling_speechtext.evaluation.spoken_cloze import cloze_accuracy, cloze_items, cloze_sequences, pair_stories

K = 32
_TEXT = {
    "a": (1, ["Mary went to the kitchen.", "Mary picked up the football."]),
    "b": (1, ["John moved to the garden.", "John journeyed to the bathroom."]),
    "c": (2, ["Sandra went to the garden.", "The kitchen is north of the garden."]),
    "d": (2, ["Daniel moved to the bathroom.", "Where is Mary?"]),
}
STORIES = [
    {"id": sid, "task": task, "sentences": sents,
     "speech": [[3 * k + 1 + j for j in range(2 + k % 2)] for k in range(2 * n, 2 * n + len(sents))]}
    for n, (sid, (task, sents)) in enumerate(_TEXT.items())
]  # fmt: skip
MODALITIES = ("T->T", "S->T", "S->S", "T->S")


@pytest.fixture(scope="module")
def lm():
    return speech_text_tokenizer(K)


def _model(tok, seed=0):
    return tiny_llama(tok, seed)


def test_pairing_crosses_tasks_and_swaps_endings():
    for seed in range(5):
        items = cloze_items(STORIES, seed)
        assert len(items) == 4
        assert all(it["task"] != it["distractor_task"] for it in items)  # 2 + 2: every pair can cross tasks
        by_id = {it["id"]: it for it in items}
        for it in items:
            partner = by_id[it["partner"]]
            assert partner["partner"] == it["id"]
            assert it["distractor"] == partner["ending"] and it["distractor_speech"] == partner["ending_speech"]
        assert sorted(it["ending"] for it in items) == sorted(it["distractor"] for it in items)  # once each
        story = next(s for s in STORIES if s["id"] == items[0]["id"])
        assert items[0]["context"] == story["sentences"][:-1] and items[0]["ending"] == story["sentences"][-1]
        assert items[0]["context_speech"] == story["speech"][:-1]
    assert cloze_items(STORIES, 1) == cloze_items(STORIES, 1)  # deterministic with the seed


def test_pairing_odd_and_lopsided_task_counts():
    stories = [{**STORIES[0], "id": f"x{i}", "task": 1} for i in range(4)] + [{**STORIES[2], "id": "y", "task": 2}]
    pairs = pair_stories(stories, seed=0)
    assert len(pairs) == 2  # 5 stories: one left over, dropped
    assert sum(a["task"] != b["task"] for a, b in pairs) == 1  # only one task-2 story to cross with
    with pytest.raises(ValueError, match="at least 2 sentences"):
        cloze_items([{**STORIES[0], "sentences": ["One."], "speech": [[1]]}])
    with pytest.raises(ValueError, match="one speech-id list per sentence"):
        cloze_items([{**STORIES[0], "speech": [[1]]}])
    with pytest.raises(ValueError, match="appears twice"):
        cloze_items([STORIES[0], STORIES[0]])


def test_untrained_model_context_free_is_exactly_half_and_bad_requests(lm):
    tok, vocab = lm
    items = cloze_items(STORIES, seed=0)
    result = cloze_accuracy(_model(tok), tok, vocab, items, MODALITIES, batch_size=3)
    for m in MODALITIES:
        assert result[m]["context_free_accuracy"] == 0.5, m
        assert result[m]["context_free_accuracy_mean_logprob"] == 0.5, m
        assert result[m]["n"] == 4 and result[m]["chance"] == 0.5
    with pytest.raises(ValueError, match="unknown modalities"):
        cloze_accuracy(_model(tok), tok, vocab, items, ("S->X",))
    with pytest.raises(ValueError, match="no items"):
        cloze_accuracy(_model(tok), tok, vocab, [], ("T->T",))


def test_a_model_that_knows_the_stories_scores_full_marks(lm):
    tok, vocab = lm
    items = cloze_items(STORIES, seed=0)
    model = _model(tok, seed=0)
    before = cloze_accuracy(model, tok, vocab, items, MODALITIES)
    seqs = []
    for it in items:  # every context modality followed by every ending modality: the true stories only
        for m in MODALITIES:
            prompt, true_ids, _ = cloze_sequences(it, m, tok, vocab)
            seqs.append(prompt + true_ids + [tok.eos_token_id])
    memorise(model, seqs, epochs=30, lr=3e-3)
    after = cloze_accuracy(model, tok, vocab, items, MODALITIES)
    assert sum(before[m]["accuracy"] for m in MODALITIES) < len(MODALITIES)  # untrained, it cannot know
    for m in MODALITIES:
        assert after[m]["accuracy"] == 1.0 and after[m]["accuracy_mean_logprob"] == 1.0, (m, after[m])
        assert after[m]["context_free_accuracy"] == 0.5, m  # knowing the endings alone still gives 50%
        assert after[m]["accuracy"] >= before[m]["accuracy"]

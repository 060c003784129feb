"""Spoken QA scoring: the prompt layout, and that a model which knows the answers scores 100% in every modality."""

import pytest
from lm_fixtures import memorise, speech_text_tokenizer, tiny_llama

from modeling_speechtext.evaluation.babi_qa import answer_text
from modeling_speechtext.evaluation.spoken_qa import prompt_ids, spoken_qa_accuracy

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


def test_prompt_layout(lm):
    tok, vocab = lm
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    ids = prompt_ids([[1, 2], "John left."], [3], tok, vocab)
    assert ids == [*vocab.wrap([1, 2]), *nl, *tok("John left.", add_special_tokens=False)["input_ids"], *nl,
                   *vocab.wrap([3])]  # fmt: skip
    with pytest.raises(ValueError, match="no speech tokens"):
        prompt_ids([[]], [3], tok, vocab)


def test_a_model_that_knows_scores_full_marks_and_an_untrained_one_does_not(lm):
    tok, vocab = lm
    model = tiny_llama(tok)
    kw = {"answer_speech": SPOKEN, "transcribe": lambda seqs: [next((a for a, s in SPOKEN.items() if s == q), "")
                                                                for q in seqs]}  # fmt: skip
    modalities = ("T->T", "S->T", "S->S", "T->S")
    before = spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, modalities, **kw)
    assert min(before[m][1]["generated"] for m in modalities) < 1.0  # the premise: untrained, it cannot
    seqs = []
    for it in ITEMS:
        for spoken_in in (False, True):
            p = (prompt_ids(it["story_speech"], it["question_speech"], tok, vocab) if spoken_in
                 else prompt_ids([it["story"]], it["question"], tok, vocab))  # fmt: skip
            seqs.append(p + tok(answer_text(it["answer"]), add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
            seqs.append(p + vocab.wrap(SPOKEN[it["answer"]]))
    memorise(model, seqs, epochs=80, lr=1e-2)
    after = spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, modalities, **kw)
    for m in modalities:
        assert after[m][1] == {"ranked": 1.0, "generated": 1.0, "chance": 0.5, "n": 2}, m


def test_bad_requests(lm):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, vocab = lm
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=32))  # fmt: skip
    with pytest.raises(ValueError, match="unknown modalities"):
        spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, ("S->X",))
    with pytest.raises(ValueError, match="needs answer_speech"):
        spoken_qa_accuracy(model, tok, vocab, ITEMS, ANSWERS, ("S->S",))
    bad = [{**ITEMS[0], "story": "One.\nTwo."}]
    with pytest.raises(ValueError, match="one entry per story sentence"):
        spoken_qa_accuracy(model, tok, vocab, bad, ANSWERS, ("S->T",))

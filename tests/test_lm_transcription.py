"""The LM's own ASR and TTS: prompts equal the pretraining renderings up to the target, an untrained model has
a high WER, and one trained on the pairs transcribes and speaks them back (read through a lookup `transcribe`)."""

import pytest
import torch
from lm_fixtures import memorise, speech_text_tokenizer, tiny_llama

from modeling_speechtext.data.mixture import PartConfig, _rows, render_segments
from modeling_speechtext.evaluation.lm_transcription import asr_prompt, lm_asr, lm_asr_tts_wer, lm_tts, tts_prompt

K = 24
ROWS = [
    {"id": "0", "speech_ids": [1, 2, 3, 4], "text": "Mary went to the kitchen."},
    {"id": "1", "speech_ids": [5, 6, 7], "text": "John moved to the garden."},
    {"id": "2", "speech_ids": [8, 9, 10, 11, 12], "text": "Where is Mary?"},
    {"id": "3", "speech_ids": [13, 14, 15], "text": "Sandra journeyed to the bathroom."},
]


def lookup_transcribe(seqs):
    """A perfect speech tokenizer ASR head for the four utterances (anything else is heard as nothing)."""
    return [next((r["text"] for r in ROWS if r["speech_ids"] == list(s)), "") for s in seqs]


@pytest.fixture(scope="module")
def lm():
    return speech_text_tokenizer(K)


def _training_rows(kind):
    from datasets import Dataset

    return list(_rows(PartConfig(kind, 1.0), Dataset.from_list(ROWS), kind, None))


def _model(tok, padded_rows=0):
    return tiny_llama(tok, extra_rows=padded_rows)


def test_prompts_are_the_pretraining_renderings_up_to_the_target(lm):
    tok, vocab = lm
    for kind, make in (("asr", lambda r: asr_prompt(tok, vocab, r["speech_ids"])),
                       ("tts", lambda r: tts_prompt(tok, vocab, r["text"]))):  # fmt: skip
        for row, example in zip(ROWS, _training_rows(kind)):
            full = render_segments(example["segments"], tok, vocab)
            prompt = make(row)
            assert full["input_ids"][: len(prompt)] == prompt, kind
            first_target = full["completion_mask"].index(1)  # where the loss, i.e. the answer, starts
            assert first_target == len(prompt) - (kind == "tts"), kind  # TTS: `<|begin_of_audio|>` is forced
    assert tts_prompt(tok, vocab, "Hi.")[-1] == vocab.begin_of_audio_id


def test_bad_input_is_a_clear_error(lm):
    tok, vocab = lm
    model = _model(tok)
    with pytest.raises(ValueError, match="no speech ids"):
        lm_asr(model, tok, vocab, [[1, 2], []])
    with pytest.raises(ValueError, match="empty text"):
        lm_tts(model, tok, vocab, ["Hello.", "  "])
    with pytest.raises(ValueError, match="no rows"):
        lm_asr_tts_wer(model, tok, vocab, [], lookup_transcribe)
    with pytest.raises(ValueError, match="needs `speech_ids` and `text`"):
        lm_asr_tts_wer(model, tok, vocab, [{"text": "Hi."}], lookup_transcribe)
    assert lm_asr(model, tok, vocab, []) == [] and lm_tts(model, tok, vocab, []) == []


def test_untrained_is_bad_and_trained_transcribes_and_speaks(lm):
    tok, vocab = lm
    model = _model(tok)
    before = lm_asr_tts_wer(model, tok, vocab, ROWS, lookup_transcribe, 24, 12, batch_size=3)
    assert before["asr_wer"] > 0.5 and before["tts_wer"] > 0.5 and before["n"] == 4
    speech = lm_tts(model, tok, vocab, [r["text"] for r in ROWS], max_new_tokens=12, batch_size=3)
    assert all(0 <= s < K for seq in speech for s in seq)  # even untrained: speech ids only
    wide = _model(tok, padded_rows=40)  # a head wider than the tokenizer (pad_to_multiple_of): rows never picked
    new = lm_tts(wide, tok, vocab, [r["text"] for r in ROWS], max_new_tokens=12)
    prompts = [tts_prompt(tok, vocab, r["text"]) for r in ROWS]
    raw = [wide.generate(torch.tensor([p]), do_sample=False, max_new_tokens=12)[0, len(p) :].tolist() for p in prompts]
    assert any(t >= len(tok) for seq in raw for t in seq)  # unconstrained, it would speak padding rows
    assert all(0 <= s < K for seq in new for s in seq)

    seqs = [render_segments(ex["segments"], tok, vocab)["input_ids"] for kind in ("asr", "tts")
            for ex in _training_rows(kind)]  # fmt: skip
    memorise(model, seqs, epochs=40, lr=3e-3)
    after = lm_asr_tts_wer(model, tok, vocab, ROWS, lookup_transcribe, 24, 12, batch_size=3)
    assert after == {"asr_wer": 0.0, "tts_wer": 0.0, "n": 4, "tts_runaway": 0.0}, after
    assert lm_asr(model, tok, vocab, [r["speech_ids"] for r in ROWS]) == [r["text"] for r in ROWS]
    assert lm_tts(model, tok, vocab, [r["text"] for r in ROWS], max_new_tokens=12) == [r["speech_ids"] for r in ROWS]

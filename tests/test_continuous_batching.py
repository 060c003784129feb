"""`continuous_generate` must compute, for every prompt, what `generate()` computes for that prompt alone."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from modeling_speechtext.generation.continuous_batching import continuous_generate

STOP, PAD = 3, 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=128, pad_token_id=PAD, eos_token_id=STOP,
    )  # fmt: skip
    # float64: the comparison is about cache/mask/position bookkeeping, not about float32 rounding near ties
    return LlamaForCausalLM(config).double().eval()


def greedy(scores, rows, n_generated):
    return scores.argmax(dim=-1)


def alone(model, prompt, limit):
    out = model.generate(
        torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), max_new_tokens=limit,
        do_sample=False, eos_token_id=STOP, pad_token_id=PAD,
    )  # fmt: skip
    return out[0, len(prompt) :].tolist()


def test_rows_leaving_and_joining_compute_what_each_prompt_computes_alone(model):
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(4, 40, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (11,), generator=g)]
    limits = [int(n) for n in torch.randint(1, 30, (11,), generator=g)]
    expected = [alone(model, p, n) for p, n in zip(prompts, limits)]
    assert len({len(e) for e in expected}) > 3, "rows should end at different steps"
    done = []
    for batch_size, refill_below in ((3, 0.5), (4, 0.0), (2, 1.0), (16, 0.5)):
        got = continuous_generate(
            model, prompts, limits, greedy, stop_token_id=STOP, pad_token_id=PAD, batch_size=batch_size,
            refill_below=refill_below, on_done=done.append,
        )  # fmt: skip
        assert got == expected
    assert sorted(done) == sorted(list(range(11)) * 4)  # every prompt reported done once per run


def test_the_chooser_sees_each_rows_own_count_and_index(model):
    seen = []

    def choose(scores, rows, n_generated):
        seen.append(dict(zip(rows.tolist(), n_generated.tolist())))
        return torch.full((len(rows),), 5)

    out = continuous_generate(model, [[4, 5], [6], [7, 8, 9]], [2, 4, 1], choose, stop_token_id=STOP,
                              pad_token_id=PAD, batch_size=2)  # fmt: skip
    assert out == [[5, 5], [5, 5, 5, 5], [5]]
    assert seen[0] == {0: 0, 1: 0} and seen[1] == {0: 1, 1: 1} and seen[2] == {1: 2, 2: 0}


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match="limits"):
        continuous_generate(model, [[4]], [1, 2], greedy, stop_token_id=STOP, pad_token_id=PAD)
    with pytest.raises(ValueError, match="refill_below"):
        continuous_generate(model, [[4]], [1], greedy, stop_token_id=STOP, pad_token_id=PAD, refill_below=2)

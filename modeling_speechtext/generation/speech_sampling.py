"""The next-token rule of the synthesizer's decoding paths: speech tokens only, per-row seeded sampling.

The speech-only mask is the shipped `SpeechOnlyLogitsProcessor` (what plain `generate()` users get from the model
folder); on top of it the synthesizer samples each row from its own generator, which is what makes a text's
tokens independent of its batch-mates (a resumed or re-sharded interleaved build gives the same tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

from modeling_speechtext.generation.synthesis_config import SynthesisConfig
from modeling_speechtext.vocab import SpeechVocab


class SpeechRule:
    """The next-token rule of both decoding paths: speech tokens only (`<|end_of_audio|>` once a row has at least one
    speech token), then greedy or per-row seeded sampling.

    Per-row sampling is what makes a text's tokens independent of its batch-mates: row r draws its Gumbel noise from
    its own generator, one draw per token it generates, and the argmax of log-probabilities + noise is a sample.
    The order is the one plain `generate()` applies with the shipped processor: mask, temperature, top-k, top-p.
    """

    def __init__(self, vocab: SpeechVocab, config: SynthesisConfig):
        from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

        from modeling_speechtext.models.text_to_token.custom_generate.generate import SpeechOnlyLogitsProcessor

        self.vocab, self.config = vocab, config
        self.speech_only = SpeechOnlyLogitsProcessor(vocab.audio_offset, vocab.codebook_size, vocab.end_of_audio_id)
        self.warpers = []
        if config.do_sample and config.top_k > 0:
            self.warpers.append(TopKLogitsWarper(config.top_k))
        if config.do_sample and config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(config.top_p))

    def filter(self, scores, may_end):
        """Scores with the non-speech tokens masked out; `may_end` (bool per row) allows the closing marker."""
        return self.speech_only.mask(scores, may_end)

    def sample(self, scores, generators):
        """One token per row; `generators[r]` is row r's noise source, or None for a row that must not draw."""
        import torch

        scores = scores / self.config.temperature
        for warper in self.warpers:
            scores = warper(None, scores)  # the top-k/top-p warpers do not look at input_ids
        noise = torch.zeros(scores.shape, dtype=torch.float32)
        for r, g in enumerate(generators):
            if g is not None:
                noise[r] = torch.rand(scores.shape[1], generator=g)
        gumbel = -torch.log(-torch.log(noise.to(scores.device).clamp_(1e-10, 1.0 - 1e-7)))
        return (torch.log_softmax(scores, dim=-1) + gumbel).argmax(dim=-1)


def speech_logits_processor(rule: SpeechRule, prompt_len: int, generators, limits):
    """`SpeechRule` as a `LogitsProcessor` for `generate()` (beam search and `continuous_batching=False`).

    `generate()` is run greedily over the result, which is one-hot when sampling. A row draws nothing once it has
    ended or reached its limit, so its draws are those of the same text decoded alone.
    """
    import torch
    from transformers import LogitsProcessor

    limits = torch.as_tensor(limits)

    class SeededSpeechOnly(LogitsProcessor):
        def __call__(self, input_ids, scores):
            new = input_ids.shape[1] - prompt_len
            scores = rule.filter(scores, new > 0)
            if not rule.config.do_sample:
                return scores
            ended = (input_ids[:, prompt_len:] == rule.vocab.end_of_audio_id).any(dim=1).tolist() if new else None
            active = [
                g if new < int(limits[r]) and not (ended and ended[r]) else None for r, g in enumerate(generators)
            ]
            choice = rule.sample(scores, active)[:, None]
            return torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)

    return SeededSpeechOnly()


def speech_chooser(rule: SpeechRule, generators):
    """`SpeechRule` for `continuous_generate`: rows are prompt indices, and every row in flight draws."""

    def choose(scores, rows, n_generated):
        scores = rule.filter(scores, (n_generated > 0).to(scores.device))
        if not rule.config.do_sample:
            return scores.argmax(dim=-1)
        return rule.sample(scores, [generators[r] for r in rows.tolist()])

    return choose


def row_budget_criterion(limits: Sequence[int], prompt_len: int):
    """Per-row stop after `limits[r]` new tokens: the shipped `SpeechTokenBudget` (see its docstring)."""
    from modeling_speechtext.models.text_to_token.custom_generate.generate import SpeechTokenBudget

    return SpeechTokenBudget(limits, prompt_len)


__all__ = ["SpeechRule", "row_budget_criterion", "speech_chooser", "speech_logits_processor"]

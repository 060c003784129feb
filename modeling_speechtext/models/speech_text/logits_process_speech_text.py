"""`StreamingThoughtsLogitsProcessor`: generation that cannot break the streaming-thoughts layout.

A small LM writes speech tokens into text slots, forgets to switch, or ends a turn without speech; a processor
that masks every token the layout does not allow at the next position makes that impossible, whatever the
model's quality (the layout itself: `layout_speech_text.py`). It plugs into `generate(logits_processor=[...])`
like any transformers `LogitsProcessor`, works with sampling, beams and batches (each row's position is read
from its own ids), and offers three output modes: interleaved (text and speech), text only, speech only.

`greedy_text=True` with `do_sample=True` samples the speech and keeps the text greedy (only the best allowed token
survives in a text slot). Measured on the demo SFT model (`bench/diagnose_speech_stop.py`): greedy speech repeats
one token 92% of the time (the data: 47%) and then never ends its last chunk (127 tokens on average against 31.7
in the data, 31 of 40 turns at the 150 cap), although teacher-forced the model puts `<|end_of_audio|>` first at
the true end in 68% of turns; sampled speech (temperature 1) ends after 24.8 tokens, none at the cap.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from .layout_speech_text import BEGIN_SPEECH, END, END_SPEECH, SPEECH, TEXT, StreamingThoughtsLayout


class StreamingThoughtsLogitsProcessor(LogitsProcessor):
    """Mask every token the layout forbids at the next position of each row.

    Args:
        layout: the vocabulary positions and chunk sizes (`StreamingThoughtsLayout`).
        prompt_length: where the assistant turn starts in `input_ids` (the padded prompt width under left
            padding, which `generate` uses for decoder-only models), or one start per row.
        mode: "interleaved", "text" or "speech".
        suppress_ids: tokens never allowed in a turn (chat role markers, pad when it is not eos, unused ids).
        greedy_text: in a slot where text may come, keep only the best allowed token (greedy text under sampling).
    """

    def __init__(
        self,
        layout: StreamingThoughtsLayout,
        prompt_length: int | Sequence[int],
        mode: str = "interleaved",
        suppress_ids: Sequence[int] = (),
        greedy_text: bool = False,
    ):
        if mode not in ("interleaved", "text", "speech"):
            raise ValueError(f"unknown output mode {mode!r}: expected interleaved, text or speech")
        self.layout, self.mode = layout, mode
        self.prompt_length = prompt_length
        self.suppress_ids = sorted({int(t) for t in suppress_ids})
        self.greedy_text = greedy_text
        self._masks: dict[tuple[int, str], torch.Tensor] = {}

    def _mask(self, vocab_size: int, kind: str, device) -> torch.Tensor:
        """Boolean (vocab,) of the tokens of one kind, cached per vocabulary size and device."""
        key = (vocab_size, kind, str(device))
        if key not in self._masks:
            lay = self.layout
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            if kind == TEXT:
                mask[:] = True
                mask[lay.audio_offset : lay.audio_offset + lay.codebook_size] = False
                for t in (lay.begin_of_audio_id, lay.end_of_audio_id, lay.eos_token_id, *self.suppress_ids):
                    if t < vocab_size:
                        mask[t] = False
            elif kind == SPEECH:
                mask[lay.audio_offset : lay.audio_offset + lay.codebook_size] = True
            else:
                token = {BEGIN_SPEECH: lay.begin_of_audio_id, END_SPEECH: lay.end_of_audio_id, END: lay.eos_token_id}
                mask[token[kind]] = True
            self._masks[key] = mask.to(device)
        return self._masks[key]

    def allowed(self, generated: Sequence[int], vocab_size: int, device="cpu") -> torch.Tensor:
        """Boolean (vocab,) of the tokens allowed after `generated` (the turn so far; a finished row gets eos/pad only)."""
        if self.layout.eos_token_id in generated:  # a finished row: `generate` pads it, nothing to enforce
            return self._mask(vocab_size, END, device)
        kinds = self.layout.next_allowed(generated, self.mode)
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        mask = self._mask(vocab_size, kinds[0], device)
        for kind in kinds[1:]:
            mask = mask | self._mask(vocab_size, kind, device)
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, vocab_size = scores.shape
        starts = self.prompt_length
        if isinstance(starts, int):
            starts = [starts] * batch
        elif len(starts) != batch:
            # beams: `generate` expands every row num_beams times, consecutively
            if batch % len(starts):
                raise ValueError(f"{len(starts)} prompt lengths for a batch of {batch} rows")
            starts = [s for s in starts for _ in range(batch // len(starts))]
        rows = input_ids.tolist()
        allowed = torch.stack([self.allowed(row[s:], vocab_size, scores.device) for row, s in zip(rows, starts)])
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        if self.greedy_text:
            text = self._mask(vocab_size, TEXT, scores.device)
            rows_with_text = (allowed & text).any(-1)
            if rows_with_text.any():
                best = scores.argmax(-1, keepdim=True)
                only = torch.zeros_like(allowed).scatter_(1, best, True)
                keep = torch.where(rows_with_text[:, None], only, allowed)
                scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        return scores


__all__ = ["StreamingThoughtsLogitsProcessor"]

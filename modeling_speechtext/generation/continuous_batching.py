"""Continuous batching for many short generations with a small causal LM on CPU.

Why not `generate()`: one call computes every row until the batch's *last* row ends, so with span lengths that
vary 3x inside a batch most row-steps are wasted on rows that already finished. Why not transformers' own
continuous batching (`generate_batch`): it samples with one global seed and drops logits processors it does not
know, while the interleaved builder needs per-row seeded sampling and a speech-only vocabulary so that a text's
tokens do not depend on its batch-mates (checked in transformers 5.24).

So this loop keeps up to `batch_size` rows in flight on one `DynamicCache`: a row leaves the batch the step it ends
(`DynamicCache.batch_select_indices`), and when fewer than `refill_below * batch_size` rows remain the next prompts
are prefilled in their own cache and joined to the running one. Rows of different lengths share the cache through
left padding: a shorter cache gets masked zero columns on the left, and the RoPE positions are kept per row, so each
row computes what it would compute alone. Columns that no remaining row attends to are trimmed away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# choose(scores [rows, vocab], prompt_ids [rows], n_generated [rows]) -> next token per row [rows]
Chooser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class _Batch:
    """The rows in flight: their cache, 2D attention mask, next RoPE position and what they generated so far."""

    def __init__(self, cache, mask: torch.Tensor, rows: torch.Tensor, logits: torch.Tensor):
        self.cache = cache
        self.mask = mask  # [rows, cache length], 1 = a real token of that row
        self.rows = rows  # prompt index of each row
        self.logits = logits  # [rows, vocab]: scores for each row's next token
        self.position = mask.sum(dim=1)  # next RoPE position of each row

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def keep(self, keep: torch.Tensor) -> None:
        """Drop finished rows, then the leading columns no remaining row attends to (only a drop makes those)."""
        if bool(keep.all()):
            return
        index = keep.nonzero().squeeze(1)
        self.cache.batch_select_indices(index)
        self.mask, self.rows, self.position = self.mask[index], self.rows[index], self.position[index]
        self.logits = self.logits[index]
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.mask.shape[1]
        if start > 0:
            for layer in self.cache.layers:  # no public left-crop in DynamicCache (crop() cuts the right end)
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self.mask = self.mask[:, start:]

    def join(self, other: _Batch) -> None:
        """Append `other`'s rows, left-padding the shorter cache with masked zero columns."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)])
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(other.mask, width, dim=1)])
        self.rows = torch.cat([self.rows, other.rows])
        self.position = torch.cat([self.position, other.position])
        self.logits = torch.cat([self.logits, other.logits])


def _pad_left(x: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x.new_zeros(shape), x], dim=dim)


def _prefill(model, prompts: Sequence[Sequence[int]], rows: torch.Tensor, pad_token_id: int) -> _Batch:
    from transformers import DynamicCache

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    position_ids = (mask.cumsum(dim=1) - 1).clamp_(min=0)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True,
        logits_to_keep=1,
    )  # fmt: skip
    return _Batch(cache, mask, rows, out.logits[:, -1].float())


@torch.inference_mode()
def continuous_generate(
    model,
    prompts: Sequence[Sequence[int]],
    limits: Sequence[int],
    choose: Chooser,
    *,
    stop_token_id: int,
    pad_token_id: int,
    batch_size: int = 128,
    refill_below: float = 0.5,
    on_done: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Generate for every prompt until `stop_token_id` (kept) or `limits[i]` new tokens; returns the new ids.

    Prompts are taken in the given order (sort them longest first: the rows that start together then end at
    similar steps). `on_done(i)` is called as prompt i finishes (progress bars).
    """
    if len(prompts) != len(limits):
        raise ValueError(f"got {len(limits)} limits for {len(prompts)} prompts")
    if batch_size < 1 or not 0 <= refill_below <= 1:
        raise ValueError(f"batch_size must be >= 1 and refill_below in [0, 1], got {batch_size}, {refill_below}")
    out: list[list[int]] = [[] for _ in prompts]
    limit = torch.as_tensor(list(limits), dtype=torch.long)
    n_new = torch.zeros(len(prompts), dtype=torch.long)
    pending = 0
    batch: _Batch | None = None
    while True:
        in_flight = len(batch) if batch is not None else 0
        if pending < len(prompts) and in_flight < batch_size and in_flight <= refill_below * batch_size:
            take = range(pending, min(len(prompts), pending + batch_size - in_flight))
            pending = take.stop
            fresh = _prefill(model, [prompts[i] for i in take], torch.tensor(list(take)), pad_token_id)
            if batch is None:
                batch = fresh
            else:
                batch.join(fresh)
        if batch is None or len(batch) == 0:
            break
        tokens = choose(batch.logits, batch.rows, n_new[batch.rows]).to(torch.long)
        for row, token in zip(batch.rows.tolist(), tokens.tolist()):
            out[row].append(token)
        n_new[batch.rows] += 1
        done = (tokens.cpu() == stop_token_id) | (n_new[batch.rows] >= limit[batch.rows])
        if on_done is not None:
            for row in batch.rows[done].tolist():
                on_done(row)
        batch.keep(~done.to(batch.mask.device))
        tokens = tokens[~done]
        if len(batch) == 0:
            batch = None
            continue
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch), 1)], dim=1)
        step = model(
            input_ids=tokens[:, None].to(model.device), attention_mask=batch.mask, position_ids=batch.position[:, None],
            cache=batch.cache, use_cache=True,
        )  # fmt: skip
        batch.position = batch.position + 1
        batch.logits = step.logits[:, -1].float()
    return out


__all__ = ["continuous_generate"]

"""Streaming decode of the speech decoder: audio chunks while the speech tokens arrive.

Exact by construction (see the model's docstring): a chunk that ends on a block border is decoded from the past
alone, with one key/value cache per Euler step and noise drawn token by token from one seeded generator, so the
streamed mel equals the offline one. Only the vocoder joins chunks (earlier audio as phase context + a short
crossfade). A mixin of `SpeechDecoderModel`: the same weights, another way of running them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .vocoder import StreamingVocoder


@dataclass
class _StreamState:
    """What `decode_stream` carries between chunks."""

    tokens: list[int] = field(default_factory=list)
    done: int = 0  # tokens already turned into mel
    caches: list[list[dict]] = field(default_factory=list)  # [euler step][layer] -> {"k", "v"}
    key_start: int = 0  # first frame still held in the caches
    generator: torch.Generator | None = None


class SpeechDecoderStreamingMixin:
    """`decode_stream` for `SpeechDecoderModel` (uses its encoder, condition, noise and sampler)."""

    def _stream_mel(self, state: _StreamState, end: int, vid, steps: int, cfg: float) -> torch.Tensor:
        """Mel frames of tokens `state.done .. end` given everything before (caches), `[frames, n_mels]`."""
        c = self.config
        ids = torch.as_tensor(state.tokens[:end], device=self.device)[None]
        hidden = self.encoder(ids)[:, state.done : end]  # block-causal: earlier states are unchanged
        voice_ids = None if vid is None else torch.tensor([vid], device=self.device)
        mu = self._condition(hidden, voice_ids)
        f = c.frames_per_token
        positions = torch.arange(state.done * f, end * f, device=self.device)
        noise = self._noise(state.generator, end - state.done)[None]
        if not state.caches:
            n = 1 if c.objective == "regression" else steps
            state.caches = [[{} for _ in range(c.estimator_layers)] for _ in range(n)]
        mel = self._sample(mu, noise, positions, None, steps, cfg, state.caches, state.key_start)
        state.done = end
        if c.context_blocks and c.block_size:  # drop keys no later frame can attend to
            keep_from = max(0, (end // c.block_size - c.context_blocks) * c.block_size * f)
            if keep_from > state.key_start:
                cut = keep_from - state.key_start
                for layer_caches in state.caches:
                    for cache in layer_caches:
                        cache["k"], cache["v"] = cache["k"][:, :, cut:], cache["v"][:, :, cut:]
                state.key_start = keep_from
        return self.denormalize_mel(mel)[0]

    @torch.no_grad()
    def decode_stream(
        self,
        tokens: Iterable[int | Sequence[int] | torch.Tensor],
        voice: str | int | None = None,
        num_steps: int | None = None,
        cfg_strength: float | None = None,
        seed: int = 0,
        first_chunk_tokens: int | None = None,
        chunk_tokens: Sequence[int] | None = None,
        codebook_size: int | None = None,
        return_mel: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yield 1-D audio chunks while `tokens` arrive (single ids or lists of ids, e.g. from an LM streamer).

        The first chunk is decoded after `first_chunk_tokens` (10 = 0.8 s), later ones after `chunk_tokens`
        more each (25, 50, 100, 150, 200, then 200 again): growing chunks as in the paper's demo. Each chunk is
        decoded with all earlier tokens and mel frames as context (block-causal caches), and the vocoder joins
        it to the previous audio with a short crossfade. Concatenated, the chunks have the offline length.
        With `return_mel=True` the generator yields `(audio, mel_chunk)` pairs (for tests and benchmarks).
        """
        c = self.config
        self._check_ids([0], codebook_size)
        vid = self._voice_id(voice)
        steps = c.num_steps if num_steps is None else num_steps
        cfg = c.cfg_strength if cfg_strength is None else cfg_strength
        sizes = [c.first_chunk_tokens if first_chunk_tokens is None else first_chunk_tokens]
        sizes += list(c.chunk_tokens if chunk_tokens is None else chunk_tokens)
        if c.block_size and any(s % c.block_size for s in sizes):
            raise ValueError(f"chunk sizes {sizes} must be multiples of block_size={c.block_size}")
        state = _StreamState(generator=torch.Generator().manual_seed(seed))
        streamer = StreamingVocoder(
            self.vocoder, c.hop_length, c.vocoder_context_tokens * c.frames_per_token,
            int(round(c.crossfade_ms * c.sampling_rate / 1000)),
        )  # fmt: skip

        def emit(end: int, final: bool):
            mel = self._stream_mel(state, end, vid, steps, cfg)
            audio = streamer.push(mel.T.float(), final=final)
            return (audio, mel) if return_mel else audio

        chunk = 0
        for item in tokens:
            new = [item] if isinstance(item, int) or (isinstance(item, torch.Tensor) and item.dim() == 0) else item
            new = [int(x) for x in (new.tolist() if isinstance(new, torch.Tensor) else new)]
            if new:
                self._check_ids(new, what=f" (stream position {len(state.tokens)})")
            state.tokens.extend(new)
            while len(state.tokens) - state.done >= sizes[min(chunk, len(sizes) - 1)]:
                end = state.done + sizes[min(chunk, len(sizes) - 1)]
                chunk += 1
                yield emit(end, final=False)
        if not state.tokens:
            raise ValueError("empty speech token stream: nothing to decode")
        if len(state.tokens) > state.done:
            yield emit(len(state.tokens), final=True)
        else:
            tail = streamer.flush()
            yield (tail, torch.zeros(0, c.n_mels)) if return_mel else tail


__all__ = ["SpeechDecoderStreamingMixin"]

"""The speech tokenizer's own reading of the tokens, as a condition for the decoder (issue 21's lead idea).

The tokenizer's layers after the quantizer turn token ids into the hidden states its ASR head reads words from:
they have learnt exactly the context dependence (a token's sound depends on ~1 s around it) that a small token
encoder trained on minutes of audio does not (docs/SPEECH_DECODER.md). So the decoder can carry a frozen copy of
them: id -> code vector (the quantizer's codebook and output projection) -> + the fixed token positions -> the
post-quantizer Whisper layers -> layer norm, exactly `SpeechTokenizerModel._decode_post_quantizer` without the CTC
head. A copy (not a reference to the tokenizer's repo) keeps the saved decoder loadable on its own and unable to
drift from the tokenizer it was trained with; it costs the post-quantizer layers' parameters.

Long streams: the tokenizer has a position table of `max_source_positions / pooling` tokens (30 s by default); its
windowed layers see a bounded context, so the copy reads any length in fixed segments with that context before
each (`_segments`). Streaming: with `block_causal` the copied layers see the current and earlier blocks of the decoder's
`block_size` only (besides the tokenizer's own attention window), so `decode_stream` stays exact. That is not the
mask the tokenizer was trained with (it looks ahead within its window) unless the tokenizer itself was trained
block-causal (`causal_block_size`); what the mismatch costs is measured in docs/SPEECH_DECODER.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from .configuration_speech_tokenizer import SpeechTokenizerConfig
from .layers_speech_tokenizer import SpeechTokenizerSinusoidalPositions, attention_windows, encoder_attention_mask

# parameter and buffer names shared with SpeechTokenizerModel (what `load_from_tokenizer` copies)
_COPIED_PREFIXES = ("embed_token_positions.", "post_layers.", "layer_norm.")


class SpeechDecoderTokenizerStates(nn.Module):
    """Token ids `[batch, tokens]` -> the tokenizer's post-quantizer states `[batch, tokens, d_model]` (frozen)."""

    def __init__(self, tokenizer_config: dict, block_size: int | None):
        """`block_size`: the decoder's attention block (tokens) for block-causal states; None keeps the
        tokenizer's own post-quantizer mask (offline decoding only: then streamed and offline mels differ)."""
        super().__init__()
        config = SpeechTokenizerConfig(**tokenizer_config)
        config._attn_implementation = "sdpa"  # a sub-config never passes through PreTrainedModel's attention setup
        self.config = config
        dim, width = config.resolved_codebook_dim, config.d_model
        self.register_buffer("codebook", torch.zeros(config.codebook_size, dim))
        self.project_out = nn.Linear(dim, width) if dim != width else nn.Identity()
        max_tokens = -(-config.max_source_positions // config.pooling_kernel_size)
        self.embed_token_positions = SpeechTokenizerSinusoidalPositions(max_tokens, width)
        n_post = config.encoder_layers - config.quantize_position
        self.post_layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(n_post)])
        self.layer_norm = nn.LayerNorm(width)
        own_block, self.window = attention_windows(config, post=True)
        self.block = block_size if block_size else own_block
        self.requires_grad_(False)

    @torch.no_grad()
    def load_from_tokenizer(self, tokenizer: nn.Module) -> None:
        """Copy the layers from a `SpeechTokenizerModel` whose config matches the one this copy was built from."""
        mine, theirs = self.config, tokenizer.config
        for key in ("codebook_size", "d_model", "encoder_layers", "quantize_position", "resolved_codebook_dim"):
            if getattr(mine, key) != getattr(theirs, key):
                raise ValueError(f"speech tokenizer {key}={getattr(theirs, key)} does not match the decoder's copy "
                                 f"({getattr(mine, key)}): build the decoder from this tokenizer's config")  # fmt: skip
        state = tokenizer.state_dict()
        ours = {k: v for k, v in state.items() if k.startswith(_COPIED_PREFIXES)}
        ours["codebook"] = state["quantizer.codebook"]
        ours |= {f"project_out.{k[len('quantizer.project_out.'):]}": v for k, v in state.items()
                 if k.startswith("quantizer.project_out.")}  # fmt: skip
        self.load_state_dict(ours, strict=True)  # every tensor of the copy, nothing else

    def train(self, mode: bool = True):
        """Always in eval mode: a frozen copy (the tokenizer's dropout, if it had any, must not follow the decoder)."""
        return super().train(False)

    def _segments(self, n: int) -> list[tuple[int, int, int]]:
        """(context start, start, end) of fixed segments: a stream longer than the tokenizer's position table
        (30 s by default) is read in segments of `segment` tokens, each with the `context` tokens before it that
        its windowed layers can see, positions counted from the context start. The boundaries depend only on
        the absolute index, so a streamed prefix and the whole utterance get the same states."""
        limit = self.embed_token_positions.num_embeddings
        if n <= limit and self.window is None:
            return [(0, 0, n)]
        if self.window is None:
            raise ValueError(f"{n} tokens exceed the speech tokenizer's maximum of {limit}, and its full attention "
                             "cannot be read in segments")  # fmt: skip
        block = self.block or 1
        context = -(-self.window * len(self.post_layers) // block) * block  # on a block border: blocks stay absolute
        segment = (limit - context) // block * block
        if segment < block:
            raise ValueError(f"speech tokenizer window {self.window} x {len(self.post_layers)} layers leaves no room "
                             f"in its {limit} positions")  # fmt: skip
        return [(max(0, a - context), a, min(a + segment, n)) for a in range(0, n, segment)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        ids = input_ids.clamp(min=0)  # padding (-1 or any id under a 0 mask) is masked below
        dtype = self.layer_norm.weight.dtype
        codes = self.project_out(F.embedding(ids, self.codebook.to(dtype)))
        out = []
        for lo, start, end in self._segments(ids.shape[1]):
            hidden = codes[:, lo:end] + self.embed_token_positions(end - lo).to(dtype)
            mask = encoder_attention_mask(valid[:, lo:end], self.block, self.window, dtype)
            for layer in self.post_layers:
                hidden = layer(hidden, mask)
            out.append(hidden[:, start - lo :])
        return self.layer_norm(torch.cat(out, dim=1))


__all__ = ["SpeechDecoderTokenizerStates"]

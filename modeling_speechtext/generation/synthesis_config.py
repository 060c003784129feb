"""Settings of the text-to-token synthesizer (`synthesis_config.json`) and the `GenerationConfig` they imply.

The synthesizer's settings say more than a `GenerationConfig` can (per-text seeds, continuous batching, MBR,
runaway retries), so they have their own file; `SynthesisConfig.generation_config` writes the part plain
`generate()` understands, so that the folder's `generation_config.json` describes what the synthesizer does.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modeling_speechtext.vocab import SpeechVocab

SYNTHESIS_CONFIG_NAME = "synthesis_config.json"


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any values, stable across processes and Python versions (unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class SynthesisConfig:
    """Sampling and safety settings of the synthesizer, saved beside the model as `synthesis_config.json`.

    Args:
        do_sample: sample (True) or take the most likely speech token (False).
        temperature, top_k, top_p: the usual sampling filters (`top_k=0` / `top_p=1.0` switch them off).
        max_tokens_per_char: a row may emit at most `max(min_token_budget, ceil(max_tokens_per_char * len(text)))`
            speech tokens; a generation that reaches it without `<|end_of_audio|>` is cut and flagged.
            Training measures the data's ratio and stores a margin above it.
        min_token_budget: floor of that budget for very short texts.
        batch_size: rows decoded together (in flight with continuous batching, per `generate()` call otherwise).
        seed: default seed; each text gets `stable_seed(seed, text)` unless explicit seeds are given.
        voice: for a voice-conditioned model (`tokenizer_voices` non-empty), the corpus voice whose tokens to
            write; training picks the one with the lowest TTS WER on held-out sentences.
        num_beams: beam search width for deterministic decoding (`do_sample=False`); 1 = greedy. Beams spend
            `num_beams` times the compute per text for the most likely token *sequence*, which repairs some of
            greedy's early mistakes. Between near-tied beams, float32 rounding of differently padded batches can
            pick either, so unlike greedy/sampling a text's tokens may depend on its batch-mates there.
        continuous_batching: keep `batch_size` rows in flight, each leaving the batch the step it ends and new texts
            joining when half the rows are gone (`continuous_batching.py`). Why: `generate()` computes every row
            of a batch until its *last* row ends; measured 13.8x the naive loop vs 5.5x for length-sorted
            `generate()` batches with the same tokens (docs/TEXT_TO_TOKEN.md). Beam search always uses `generate()`.
        refill_below: with continuous batching, the next texts are prefilled once at most this fraction of
            `batch_size` rows remain (prefilling a few texts at a time costs more than it saves).
        mbr_samples: minimum-Bayes-risk decoding when > 0: besides the greedy decode (and the beam search decode
            when `num_beams > 1`), draw this many seeded samples per text at `mbr_temperature`, and return the
            candidate whose summed normalised token edit distance to all the others is smallest (the consensus).
            Why: a single greedy pass commits to its first guess at every ambiguous word; the consensus of many
            plausible readings is the reading most of them agree on, with no judge involved. It costs
            `1 + mbr_samples (+ num_beams)` decodes per text; measured on the tiny model (16 samples at 0.6 + 4
            beams): TTS WER 9.24% -> 7.22% on tuning sentences, 10.58% -> 9.57% on others (docs/TEXT_TO_TOKEN.md).
        mbr_temperature: sampling temperature of the MBR candidates.
        runaway_retries: decode a text whose output was cut as a runaway again, up to this many times, by seeded
            sampling at `retry_temperature`, and keep the first output that ends with `<|end_of_audio|>` (the
            text stays flagged if none does). Why: a small model sometimes loops on one unit and never closes the
            span, and a cut span is a bad piece of interleaved data; a re-draw of just those few texts usually
            ends normally (measured on the tiny model: 4.7% of greedy texts cut -> 0%, TTS WER unchanged within
            noise). Retries depend only on (text, seed), like everything else.
        retry_temperature: sampling temperature of those retries.
        cache_implementation: for the `generate()` path: `None` = the dynamic KV cache; `"static"` preallocates
            each batch's cache for the longest budget (faster when every row runs long, slower when most rows
            stop early because attention then spans the whole preallocated length; measured both ways here).

    Runaways are bounded per row only, by the row's own budget: a cut based on the other rows of a batch (an
    earlier `straggler_factor`) made a text's tokens depend on its batch-mates, which broke the interleaved
    builder's promise that a document's tokens do not depend on sharding, chunking or resuming.
    """

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens_per_char: float = 2.0
    min_token_budget: int = 10
    batch_size: int = 64
    seed: int = 0
    voice: str | None = None
    num_beams: int = 1
    continuous_batching: bool = True
    refill_below: float = 0.5
    mbr_samples: int = 0
    mbr_temperature: float = 0.6
    runaway_retries: int = 0
    retry_temperature: float = 0.6
    cache_implementation: str | None = None

    def __post_init__(self):
        if self.temperature <= 0 and self.do_sample:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens_per_char <= 0 or self.batch_size < 1 or self.min_token_budget < 1:
            raise ValueError("max_tokens_per_char, batch_size and min_token_budget must be positive")
        if not 0 <= self.refill_below <= 1:
            raise ValueError(f"refill_below must be in [0, 1], got {self.refill_below}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("num_beams > 1 is beam search: set do_sample=False (sampling is per row and seeded)")
        if self.mbr_samples < 0 or (self.mbr_samples and self.mbr_temperature <= 0):
            raise ValueError(
                f"mbr_samples must be >= 0 and mbr_temperature > 0, got {self.mbr_samples} / {self.mbr_temperature}"
            )
        if self.runaway_retries < 0 or (self.runaway_retries and self.retry_temperature <= 0):
            raise ValueError(
                f"runaway_retries must be >= 0 and retry_temperature > 0, got {self.runaway_retries} / "
                f"{self.retry_temperature}"
            )
        if self.mbr_samples and self.do_sample:
            raise ValueError("mbr_samples > 0 is MBR decoding around the greedy decode: set do_sample=False")

    def token_budget(self, text: str) -> int:
        """The most speech tokens `text` may get (the same rule the shipped `generate.py` applies)."""
        from modeling_speechtext.models.text_to_token.custom_generate.generate import token_budget

        return token_budget(text, self.max_tokens_per_char, self.min_token_budget)

    def generation_config(self, vocab: SpeechVocab, pad_token_id: int | None, max_length: int | None = None):
        """The `GenerationConfig` that says what this synthesizer does, for plain `generate()` users.

        Sampling settings as here (greedy or beams when `do_sample=False`), `eos_token_id` = `<|end_of_audio|>`,
        `max_length` = the model's positions (the hard bound), and the keys the shipped
        `custom_generate/generate.py` reads: where the speech tokens sit and the per-text budget
        (`max_tokens_per_char`, `min_token_budget`). What `generate()` cannot express (per-text seeded draws,
        continuous batching, MBR, runaway retries) stays in `synthesis_config.json`.
        """
        from transformers import GenerationConfig

        sampling = (
            {"do_sample": True, "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
            if self.do_sample
            else {
                "do_sample": False,
                "num_beams": self.num_beams,
                **({"early_stopping": True} if self.num_beams > 1 else {}),
            }
        )
        return GenerationConfig(
            **sampling,
            eos_token_id=vocab.end_of_audio_id,
            pad_token_id=pad_token_id,
            bos_token_id=None,
            max_length=max_length,
            use_cache=True,
            cache_implementation=self.cache_implementation,
            speech_token_offset=vocab.audio_offset,
            speech_codebook_size=vocab.codebook_size,
            begin_of_audio_id=vocab.begin_of_audio_id,
            max_tokens_per_char=self.max_tokens_per_char,
            min_token_budget=self.min_token_budget,
        )

    def save(self, directory: str | os.PathLike) -> None:
        Path(directory, SYNTHESIS_CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike, **overrides) -> SynthesisConfig:
        path = Path(directory, SYNTHESIS_CONFIG_NAME)
        values = json.loads(path.read_text()) if path.is_file() else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown synthesis settings {unknown}; known: {sorted(known)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class SynthesisOutput:
    """`speech_ids[i]` are the speech tokenizer ids for `texts[i]`; `truncated[i]` flags a cut runaway."""

    speech_ids: list[list[int]]
    truncated: list[bool]
    num_tokens: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds if self.seconds > 0 else 0.0


__all__ = ["SYNTHESIS_CONFIG_NAME", "SynthesisConfig", "SynthesisOutput", "stable_seed"]

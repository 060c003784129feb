"""Text-to-token model: a plain causal LM that reads `text <|begin_of_audio|>` and writes speech tokens.

No audio is synthesized: the paper's interleaved data only needs the *speech tokens* a TTS would produce, so a
small decoder-only LM trained on (text, speech tokens) pairs replaces the TTS + tokenizer round trip. The model
is any `AutoModelForCausalLM` (Llama/Qwen2-style config); everything specific lives in the vocabulary
(`vocab.add_speech_tokens`) and in `TextToTokenSynthesizer`, which makes `generate()` fast on CPU:

- length-sorted batches with left padding (rows of one batch finish at similar steps, little padding work),
- the KV cache (`use_cache=True`, ~3x at batch 1 here),
- logits restricted to speech tokens + `<|end_of_audio|>` (a tiny LM cannot wander into text),
- per-row sampling with per-row generators: a text's speech tokens depend only on (text, seed), not on which
  other texts share its batch, so naive and batched synthesis agree and a resumed build is reproducible,
- a per-row token budget (`max_tokens_per_char`): a runaway generation is cut and flagged, never unbounded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from modeling_speechtext.constants import BEGIN_OF_AUDIO
from modeling_speechtext.vocab import SpeechVocab, add_speech_tokens, check_model_vocab

SYNTHESIS_CONFIG_NAME = "synthesis_config.json"


VOICE_TOKEN_TEMPLATE = "<|voice:{}|>"


def voice_token(voice: str) -> str:
    """The special token that asks a voice-conditioned text-to-token model for one corpus voice's tokens."""
    return VOICE_TOKEN_TEMPLATE.format(voice)


def tokenizer_voices(tokenizer) -> list[str]:
    """Voices a text-to-token tokenizer was extended with (`add_voice_tokens`), in id order; [] if none."""
    head, tail = VOICE_TOKEN_TEMPLATE.split("{}")
    vocab = tokenizer.get_vocab()
    found = [(i, t[len(head) : -len(tail)]) for t, i in vocab.items() if t.startswith(head) and t.endswith(tail)]
    return [v for _, v in sorted(found)]


def add_voice_tokens(tokenizer, voices: Sequence[str]) -> list[str]:
    """Extend the tokenizer with one special token per voice; call before the model is built or resized.

    Why voices at all: the corpus has many voices, and their tokens for one sentence differ. A model that does
    not know which voice it is imitating learns their mixture, and greedy decoding of a mixture makes token
    sequences no voice would produce (more ASR errors). With the voice in the prompt each target is one mode.
    """
    voices = sorted(set(voices))
    bad = [v for v in voices if not v or "|>" in v or v != v.strip()]
    if bad:
        raise ValueError(f"voice names must be non-empty, without '|>' or surrounding spaces: {bad}")
    tokenizer.add_tokens([voice_token(v) for v in voices], special_tokens=True)
    return voices


def format_prompt(text: str, voice: str | None = None) -> str:
    """The one prompt format, shared by training and inference: `[<|voice:v|>]text<|begin_of_audio|>`."""
    return (voice_token(voice) if voice else "") + text.strip() + BEGIN_OF_AUDIO


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
        return max(self.min_token_budget, math.ceil(self.max_tokens_per_char * len(text)))

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


class _SpeechRule:
    """The next-token rule of both decoding paths: speech tokens only (`<|end_of_audio|>` once a row has at least one
    speech token), then greedy or per-row seeded sampling.

    Per-row sampling is what makes a text's tokens independent of its batch-mates: row r draws its Gumbel noise from
    its own generator, one draw per token it generates, and the argmax of log-probabilities + noise is a sample.
    """

    def __init__(self, vocab: SpeechVocab, vocab_rows: int, config: SynthesisConfig):
        import torch
        from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

        self.vocab, self.config = vocab, config
        self.allowed = torch.zeros(vocab_rows, dtype=torch.bool)
        self.allowed[vocab.audio_offset : vocab.audio_offset + vocab.codebook_size] = True
        self.warpers = []
        if config.do_sample and config.top_k > 0:
            self.warpers.append(TopKLogitsWarper(config.top_k))
        if config.do_sample and config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(config.top_p))

    def filter(self, scores, may_end):
        """Scores with the non-speech tokens masked out; `may_end` (bool per row) allows the closing marker."""
        mask = self.allowed[: scores.shape[1]].to(scores.device).expand_as(scores).clone()
        mask[:, self.vocab.end_of_audio_id] = may_end
        return scores.float().masked_fill(~mask, float("-inf"))

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


def _speech_logits_processor(rule: _SpeechRule, prompt_len: int, generators, limits):
    """`_SpeechRule` as a `LogitsProcessor` for `generate()` (beam search and `continuous_batching=False`).

    `generate()` is run greedily over the result, which is one-hot when sampling. A row draws nothing once it has
    ended or reached its limit, so its draws are those of the same text decoded alone.
    """
    import torch
    from transformers import LogitsProcessor

    limits = torch.as_tensor(limits)

    class SpeechOnly(LogitsProcessor):
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

    return SpeechOnly()


def _speech_chooser(rule: _SpeechRule, generators):
    """`_SpeechRule` for `continuous_generate`: rows are prompt indices, and every row in flight draws."""

    def choose(scores, rows, n_generated):
        scores = rule.filter(scores, (n_generated > 0).to(scores.device))
        if not rule.config.do_sample:
            return scores.argmax(dim=-1)
        return rule.sample(scores, [generators[r] for r in rows.tolist()])

    return choose


def _row_budget_criterion(limits: Sequence[int], prompt_len: int):
    """Per-row stop after `limits[r]` new tokens (a budget in speech tokens plus one for the closing marker).

    Beam search calls the criterion with several candidate rows per text, consecutive in the batch (`2 * num_beams`
    candidates in transformers 5), so the per-text limit is repeated to whatever multiple of the batch arrives.
    """
    import torch
    from transformers import StoppingCriteria

    limit = torch.as_tensor(list(limits))

    class RowBudget(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            per_text = input_ids.shape[0] // limit.shape[0]
            return (input_ids.shape[1] - prompt_len) >= limit.repeat_interleave(per_text).to(input_ids.device)

    return RowBudget()


class TextToTokenSynthesizer:
    """Batched text -> speech tokens with a text-to-token causal LM.

    Example:
        >>> synth = TextToTokenSynthesizer.from_pretrained("runs/demo/text_to_token")
        >>> synth.synthesize(["Mary went to the kitchen."])  # [[417, 12, 12, 98, ...]]
    """

    def __init__(self, model, tokenizer, config: SynthesisConfig | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or SynthesisConfig()
        self.vocab = SpeechVocab.from_tokenizer(tokenizer)
        check_model_vocab(model, self.vocab)
        self.voices = tokenizer_voices(tokenizer)
        self._check_voice(self.config.voice)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the text-to-token tokenizer needs a pad or eos token for left padding")
        self.pad_token_id = pad

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, dtype=None, device: str = "cpu", **synthesis_overrides
    ) -> TextToTokenSynthesizer:
        """Load model + tokenizer + `synthesis_config.json` from a folder; keyword arguments override settings."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no text-to-token model here (config.json missing)")
        tokenizer = AutoTokenizer.from_pretrained(path)
        SpeechVocab.from_tokenizer(tokenizer)  # fail with the vocabulary message before loading weights
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        return cls(model, tokenizer, SynthesisConfig.load(path, **synthesis_overrides))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.config.save(path)

    def _check_voice(self, voice: str | None) -> None:
        if voice is not None and voice not in self.voices:
            known = f"it knows {self.voices}" if self.voices else "it was trained without voice conditioning"
            raise ValueError(f"voice {voice!r} is not a voice of this text-to-token model; {known}")
        if voice is None and self.voices:
            raise ValueError(f"this text-to-token model is voice-conditioned: choose a voice from {self.voices}")

    def encode_prompts(self, texts: Sequence[str], voice: str | None = None) -> list[list[int]]:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"texts[{i}] is empty or not a string ({t!r}); nothing to synthesize")
        return self.tokenizer([format_prompt(t, voice) for t in texts], add_special_tokens=False)["input_ids"]

    def _speech_prefix(self, new_ids: list[int]) -> list[int]:
        """Speech ids of the generated ids up to the first non-speech token (the closing marker or padding)."""
        return self.vocab.token_to_speech_ids(itertools.takewhile(self.vocab.is_speech_token, new_ids))

    def _generate(self, prefixes, limits, generators, rule: _SpeechRule) -> list[list[int]]:
        """One left-padded `generate()` call; row r stops after `limits[r]` new tokens or at `<|end_of_audio|>`."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        width = max(len(x) for x in prefixes)
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(x)) + x for x in prefixes])
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in prefixes])
        config = rule.config
        beams = {"num_beams": config.num_beams, "early_stopping": True} if config.num_beams > 1 else {}
        # early_stopping=True: "never" would look at the batch's max length, so beams would depend on batch-mates
        gen_config = GenerationConfig(
            max_new_tokens=max(limits),
            do_sample=False,  # sampling happens per row inside the logits processor
            eos_token_id=self.vocab.end_of_audio_id,
            pad_token_id=self.pad_token_id,
            use_cache=True,
            cache_implementation=config.cache_implementation,
            **beams,
        )
        processor = _speech_logits_processor(rule, width, generators, limits)
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention_mask.to(self.model.device),
                generation_config=gen_config,
                logits_processor=LogitsProcessorList([processor]),
                stopping_criteria=StoppingCriteriaList([_row_budget_criterion(limits, width)]),
            )
        return generated[:, width:].tolist()

    def synthesize(
        self,
        texts: Sequence[str],
        *,
        seeds: Sequence[int] | None = None,
        batch_size: int | None = None,
        return_dict: bool = False,
        progress: bool = False,
        **overrides,
    ) -> list[list[int]] | SynthesisOutput:
        """Speech token ids for each text (same order). `overrides` change `SynthesisConfig` fields for this call.

        `seeds` (one per text) make outputs reproducible per item; by default `stable_seed(config.seed, text)`.
        Returns a list of id lists, or a `SynthesisOutput` (with truncation flags and speed) if `return_dict`.
        """
        config = SynthesisConfig(**{**asdict(self.config), **overrides}) if overrides else self.config
        texts = list(texts)
        if seeds is None:
            seeds = [stable_seed(config.seed, t) for t in texts]
        if len(seeds) != len(texts):
            raise ValueError(f"got {len(seeds)} seeds for {len(texts)} texts")
        self._check_voice(config.voice)
        prompts = self.encode_prompts(texts, config.voice)
        budgets = [config.token_budget(t.strip()) for t in texts]
        bs = batch_size or config.batch_size
        start = time.perf_counter()
        if config.mbr_samples:
            out_ids, truncated = self._minimum_bayes_risk(prompts, budgets, seeds, config, bs, progress)
        else:
            out_ids, truncated = self._decode(prompts, budgets, seeds, config, bs, progress)
        runaways = sum(truncated)
        if config.runaway_retries and runaways:
            self._retry_runaways(out_ids, truncated, prompts, budgets, seeds, config, bs)
        n_tokens = sum(map(len, out_ids))
        seconds = time.perf_counter() - start
        if not return_dict:
            return out_ids
        stats = {
            "texts": len(texts),
            "batch_size": bs,
            "candidates_per_text": self._num_candidates(config),
            "runaways_before_retries": runaways,
        }
        return SynthesisOutput(out_ids, truncated, n_tokens, seconds, stats)

    @staticmethod
    def _num_candidates(config: SynthesisConfig) -> int:
        return 1 + config.mbr_samples + (config.num_beams > 1 and config.mbr_samples > 0)

    def _minimum_bayes_risk(self, prompts, budgets, seeds, config: SynthesisConfig, bs: int, progress: bool):
        """The consensus candidate per text (see `SynthesisConfig.mbr_samples`); ties go to the earlier one."""
        from rapidfuzz.distance import Levenshtein  # C edit distance over id lists (jiwer's own backend)

        single = replace(config, mbr_samples=0)
        runs = [self._decode(prompts, budgets, seeds, replace(single, num_beams=1), bs, progress)]
        if config.num_beams > 1:
            runs.append(self._decode(prompts, budgets, seeds, single, bs, progress))
        sampling = replace(single, do_sample=True, temperature=config.mbr_temperature, num_beams=1)
        for k in range(config.mbr_samples):
            runs.append(
                self._decode(prompts, budgets, [stable_seed(s, "mbr", k) for s in seeds], sampling, bs, progress)
            )
        out_ids, truncated = [], []
        for i in range(len(prompts)):
            cands = [run[0][i] for run in runs]
            risk = [sum(Levenshtein.normalized_distance(a, b) for b in cands) for a in cands]
            best = min(range(len(cands)), key=lambda c: (risk[c], c))
            out_ids.append(cands[best])
            truncated.append(runs[best][1][i])
        return out_ids, truncated

    def _retry_runaways(self, out_ids, truncated, prompts, budgets, seeds, config: SynthesisConfig, bs: int):
        """Re-draw the flagged texts in place (see `SynthesisConfig.runaway_retries`)."""
        sampling = replace(config, do_sample=True, temperature=config.retry_temperature, num_beams=1, mbr_samples=0)
        for k in range(config.runaway_retries):
            redo = [i for i, cut in enumerate(truncated) if cut]
            if not redo:
                return
            ids, cut = self._decode(
                [prompts[i] for i in redo], [budgets[i] for i in redo],
                [stable_seed(seeds[i], "retry", k) for i in redo], sampling, bs, False,
            )  # fmt: skip
            for j, i in enumerate(redo):
                if not cut[j]:
                    out_ids[i], truncated[i] = ids[j], False

    def _decode(self, prompts, budgets, seeds, config: SynthesisConfig, bs: int, progress: bool):
        """One decoding pass (greedy, sampling or beams): speech ids and runaway flags per prompt."""
        import torch
        from tqdm.auto import tqdm

        # Sorted by expected speech length (the budget grows with the characters), longest first: rows that start
        # together end at similar steps, and the biggest rows (memory peak) come first.
        order = sorted(range(len(prompts)), key=lambda i: (-budgets[i], -len(prompts[i]), i))
        limits = [budgets[i] + 1 for i in order]  # the speech budget + the closing marker
        rule = _SpeechRule(self.vocab, self.model.get_input_embeddings().num_embeddings, config)
        generators = [torch.Generator().manual_seed(int(seeds[i])) for i in order] if config.do_sample else None
        if config.continuous_batching and config.num_beams == 1:
            from modeling_speechtext.generation.continuous_batching import continuous_generate

            with tqdm(total=len(order), disable=not progress, desc="synthesize", unit="text") as bar:
                new = continuous_generate(
                    self.model, [prompts[i] for i in order], limits, _speech_chooser(rule, generators),
                    stop_token_id=self.vocab.end_of_audio_id, pad_token_id=self.pad_token_id, batch_size=bs,
                    refill_below=config.refill_below, on_done=lambda _: bar.update(),
                )  # fmt: skip
        else:
            new = []
            for b in tqdm(range(0, len(order), bs), disable=not progress, desc="synthesize", unit="batch"):
                new += self._generate(
                    [prompts[i] for i in order[b : b + bs]], limits[b : b + bs],
                    generators[b : b + bs] if generators else [], rule,
                )  # fmt: skip
        out_ids: list[list[int]] = [[] for _ in prompts]
        truncated = [False] * len(prompts)
        for row, i in zip(new, order):
            speech = self._speech_prefix(row)
            truncated[i] = not (len(speech) < len(row) and row[len(speech)] == self.vocab.end_of_audio_id)
            out_ids[i] = speech[: budgets[i]]
        return out_ids, truncated


def build_text_to_token_model(tokenizer, codebook_size: int, model_config: dict[str, Any] | None = None):
    """A fresh causal LM for text -> speech tokens: `AutoConfig.for_model(model_type, ...)` + speech vocabulary.

    The LM is built over the text vocabulary and then extended by `add_speech_tokens`, the same path a pretrained
    Hub LM takes, so there is one way speech tokens enter a model. Returns `(model, vocab)`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = {
        "model_type": "llama",
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 768,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
    }
    cfg.update(model_config or {})
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **cfg,
    )
    model = AutoModelForCausalLM.from_config(config)
    return model, _prepare_text_to_token(model, tokenizer, codebook_size)


def load_text_to_token_model(name_or_path: str | os.PathLike, codebook_size: int, tokenizer=None, **from_pretrained):
    """A pretrained causal LM (Hub id or folder) made into a text-to-token model.

    Two uses: at scale the text-to-token model can start from a pretrained text LM (its text side already reads
    text; new speech rows are mean-initialised), and a trained text-to-token model can be trained further
    (more steps, a new corpus) from its folder, where `add_speech_tokens` finds its speech tokens and adds
    nothing. `tokenizer` defaults to the checkpoint's own. Weights load from safetensors only. Returns
    `(model, tokenizer, vocab)`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True, **from_pretrained)
    except ValueError as err:  # e.g. "Unrecognized configuration class ... for AutoModelForCausalLM"
        raise ValueError(f"{name_or_path}: not a causal LM checkpoint, cannot start a text-to-token model") from err
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{name_or_path}: its tokenizer has neither a pad nor an eos token for left padding")
        tokenizer.pad_token = tokenizer.eos_token  # Llama-family tokenizers ship without a pad token
    return model, tokenizer, _prepare_text_to_token(model, tokenizer, codebook_size)


def _prepare_text_to_token(model, tokenizer, codebook_size: int) -> SpeechVocab:
    """Speech vocabulary in, and generation ends at `<|end_of_audio|>`: one path for fresh and pretrained LMs."""
    vocab = add_speech_tokens(model, tokenizer, codebook_size)
    model.config.eos_token_id = vocab.end_of_audio_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = vocab.end_of_audio_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return vocab


__all__ = [
    "SYNTHESIS_CONFIG_NAME",
    "SynthesisConfig",
    "SynthesisOutput",
    "TextToTokenSynthesizer",
    "add_voice_tokens",
    "build_text_to_token_model",
    "format_prompt",
    "load_text_to_token_model",
    "tokenizer_voices",
    "voice_token",
    "stable_seed",
]

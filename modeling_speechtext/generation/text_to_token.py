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

A saved folder also works with plain transformers: `save_pretrained` writes a `generation_config.json` that
describes these settings and ships the speech-only rule as `custom_generate/generate.py`
(`modeling_speechtext/models/text_to_token/`), which `trust_remote_code=True` loading puts behind `generate()`.
Settings live in `synthesis_config.py`, the per-row rule in `speech_sampling.py`, model building in
`text_to_token_model.py`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from modeling_speechtext.generation.speech_sampling import (
    SpeechRule,
    row_budget_criterion,
    speech_chooser,
    speech_logits_processor,
)
from modeling_speechtext.generation.synthesis_config import (
    SYNTHESIS_CONFIG_NAME,
    SynthesisConfig,
    SynthesisOutput,
    stable_seed,
)
from modeling_speechtext.generation.text_to_token_model import (
    add_voice_tokens,
    build_text_to_token_model,
    format_prompt,
    load_text_to_token_model,
    tokenizer_voices,
    voice_token,
)
from modeling_speechtext.vocab import SpeechVocab, check_model_vocab


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
        """Model, tokenizer and the settings (`save_settings`): a folder both this class and plain transformers load."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        self.save_settings(path)

    def save_settings(self, path: str | os.PathLike) -> None:
        """`synthesis_config.json`, the `generation_config.json` it implies, and `custom_generate/generate.py`.

        Written together so the three never disagree: call it again after changing `self.config` (the training
        recipe does, once it has tuned the temperature).
        """
        from modeling_speechtext.models.text_to_token.custom_generate import generate as shipped

        self.config.save(path)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        self.config.generation_config(self.vocab, self.pad_token_id, positions).save_pretrained(path)
        target = Path(path, "custom_generate")
        target.mkdir(exist_ok=True)
        shutil.copyfile(shipped.__file__, target / "generate.py")

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

    def _generate(self, prefixes, limits, generators, rule: SpeechRule) -> list[list[int]]:
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
        processor = speech_logits_processor(rule, width, generators, limits)
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention_mask.to(self.model.device),
                generation_config=gen_config,
                logits_processor=LogitsProcessorList([processor]),
                stopping_criteria=StoppingCriteriaList([row_budget_criterion(limits, width)]),
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
        rule = SpeechRule(self.vocab, config)
        generators = [torch.Generator().manual_seed(int(seeds[i])) for i in order] if config.do_sample else None
        if config.continuous_batching and config.num_beams == 1:
            from modeling_speechtext.generation.continuous_batching import continuous_generate

            with tqdm(total=len(order), disable=not progress, desc="synthesize", unit="text") as bar:
                new = continuous_generate(
                    self.model, [prompts[i] for i in order], limits, speech_chooser(rule, generators),
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

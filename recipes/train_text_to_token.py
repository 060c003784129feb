"""Train the text-to-token model: a plain causal LM reading `text<|begin_of_audio|>` and writing speech tokens.

Usage (one process, as the pipeline runs it):

    python -m recipes.train_text_to_token --config recipes/configs/demo/text_to_token.yaml \\
        --run_dir runs/demo --output_dir runs/demo/text_to_token

    # any field of the YAML can be overridden on the command line
    python -m recipes.train_text_to_token --config recipes/configs/demo/text_to_token.yaml \\
        --run_dir runs/demo --output_dir /tmp/t2t --num_train_epochs 2 --hidden_size 128

    # start from a pretrained causal LM (Hub id or folder; its tokenizer is used), or train a saved
    # text-to-token model further (its size and vocabulary are kept; the size fields are then ignored)
    python -m recipes.train_text_to_token --config recipes/configs/paper/text_to_token.yaml \\
        --run_dir runs/paper --output_dir runs/paper/text_to_token --model_name_or_path Qwen/Qwen2.5-0.5B

    # data-parallel: torchrun underneath (accelerate's MULTI_CPU mode needs mpirun); gloo on CPU
    accelerate launch --multi_gpu --num_processes 2 -m recipes.train_text_to_token \\
        --config recipes/configs/demo/text_to_token.yaml --run_dir runs/demo --output_dir runs/demo/text_to_token

Inputs: `<run_dir>/speech_tokens/dataset` (text + `speech_ids` per utterance), the text tokenizer
`<run_dir>/text_tokenizer` and the speech tokenizer `<run_dir>/speech_tokenizer` (codebook size; its ASR head
scores the result). Output: model + tokenizer + `synthesis_config.json` loadable with
`TextToTokenSynthesizer.from_pretrained`, `metrics.json` (eval loss, TTS WER next to the real-token WER, synthesis
speed) and `loss_curve.png`. An interrupted run resumes from its last checkpoint.

Loss on the speech side only: the data are pre-tokenized into TRL's prompt-completion form (`input_ids` +
`completion_mask`) and `SFTTrainer` with `completion_only_loss=True` turns the mask into labels. Pre-tokenizing
ids directly (speech id + offset) skips rendering and re-parsing thousands of `<|audio_i|>` strings per epoch and
guarantees the prompt tokens are exactly those the synthesizer feeds at inference (`format_prompt`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trl import SFTConfig

from modeling_speechtext.hardware import AutoPrecisionMixin, reset_accelerator_precision
from modeling_speechtext.hub.upload import take_push_settings, upload_folder_to_hub
from recipes.common import finish_run, plot_loss_curve

logger = logging.getLogger("train_text_to_token")


@dataclass
class TextToTokenArguments:
    """Data, model size and synthesis settings (`SFTConfig` holds the optimisation ones)."""

    run_dir: str | None = field(
        default=None, metadata={"help": "run folder with speech_tokens/, text_tokenizer/, ..."}
    )
    speech_tokens: str | None = field(default=None, metadata={"help": "default: <run_dir>/speech_tokens/dataset"})
    text_tokenizer: str | None = field(default=None, metadata={"help": "default: <run_dir>/text_tokenizer"})
    speech_tokenizer: str | None = field(
        default=None, metadata={"help": "default: <run_dir>/speech_tokenizer (codebook size, TTS WER judge)"}
    )
    codebook_size: int | None = field(default=None, metadata={"help": "default: the speech tokenizer's"})
    train_split: str = "train"
    eval_split: str = "validation"
    max_train_samples: int | None = None
    max_eval_samples: int | None = field(default=512, metadata={"help": "for the eval loss"})
    # the causal LM: a pretrained one, or a fresh one of any AutoConfig model type (Llama/Qwen2-style)
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "start from this causal LM (Hub id or folder) instead of a fresh one of the size below: a "
            "pretrained text LM, or a trained text-to-token model to train further; its tokenizer replaces "
            "text_tokenizer"
        },
    )
    model_type: str = "llama"
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    intermediate_size: int = 768
    max_position_embeddings: int = 1024
    # synthesis settings stored with the model
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    synthesis_batch_size: int = 64
    runaway_retries: int = field(
        default=0, metadata={"help": "re-draw a text cut as a runaway up to this many times (SynthesisConfig)"}
    )
    retry_temperature: float = 0.6
    max_tokens_per_char_margin: float = field(
        default=1.5, metadata={"help": "runaway guard = margin x the 99.9th percentile of the data's tokens/char"}
    )
    temperature_grid: list[float] | None = field(
        default=None,
        metadata={"help": "choose the temperature (0 = greedy) by TTS WER on other held-out sentences"},
    )
    voice_conditioning: bool = field(
        default=False,
        metadata={
            "help": "prefix each prompt with its corpus voice (<|voice:name|>) so every target has one voice; "
            "synthesis then uses the voice with the lowest TTS WER on held-out tuning sentences"
        },
    )
    voice_tune_samples: int = field(default=50, metadata={"help": "tuning sentences per candidate voice"})
    # evaluation
    mbr_samples: int = field(
        default=0,
        metadata={
            "help": "with a temperature_grid: also try minimum-Bayes-risk decoding with this many samples (+ greedy, "
            "+ beams) on the tuning sentences, and keep it if its TTS WER is lower (SynthesisConfig.mbr_samples)"
        },
    )
    mbr_temperature: float = 0.6
    mbr_num_beams: int = field(default=1, metadata={"help": "beam width of the MBR beam-search candidate (1: none)"})
    tts_eval_samples: int = field(default=200, metadata={"help": "held-out sentences for the TTS WER (0: skip)"})
    keep_checkpoints: bool = False
    num_threads: int | None = field(
        default=None, metadata={"help": "torch threads; 1 on a shared machine (OpenMP spin-waits when oversubscribed)"}
    )


def _resolve(args: TextToTokenArguments) -> dict[str, Path | None]:
    run = Path(args.run_dir) if args.run_dir else None

    def pick(value, default):
        if value:
            return Path(value)
        return run / default if run else None

    paths = {
        "speech_tokens": pick(args.speech_tokens, "speech_tokens/dataset"),
        "text_tokenizer": pick(args.text_tokenizer, "text_tokenizer"),
        "speech_tokenizer": pick(args.speech_tokenizer, "speech_tokenizer"),
    }
    for key in ("speech_tokens",) if args.model_name_or_path else ("speech_tokens", "text_tokenizer"):
        if paths[key] is None or not paths[key].exists():
            raise FileNotFoundError(f"{key}: {paths[key]} not found (set --{key} or --run_dir)")
    if paths["speech_tokenizer"] is not None and not (paths["speech_tokenizer"] / "config.json").is_file():
        paths["speech_tokenizer"] = None
    return paths


def _codebook_size(args: TextToTokenArguments, speech_tokenizer: Path | None, data) -> int:
    if args.codebook_size:
        return args.codebook_size
    if speech_tokenizer is not None:
        return int(json.loads((speech_tokenizer / "config.json").read_text())["codebook_size"])
    raise ValueError("codebook_size unknown: pass --codebook_size or a speech tokenizer folder")


def tokenize_pairs(dataset, tokenizer, vocab, max_length: int | None = None, voices: bool = False):
    """(text, speech_ids) rows -> TRL prompt-completion ids: `input_ids` and `completion_mask` (1 = speech side).

    With `voices`, each prompt starts with the row's voice token (the dataset needs a `voice` column).

    Rows with empty text or no speech tokens are dropped (they teach nothing); so are rows longer than
    `max_length` (truncation would cut `<|end_of_audio|>` and teach the model never to stop).
    """
    from modeling_speechtext.generation.text_to_token import format_prompt

    def encode(batch):
        texts = [t if isinstance(t, str) else "" for t in batch["text"]]
        row_voices = batch["voice"] if voices else [None] * len(texts)
        prompts = tokenizer([format_prompt(t, v) for t, v in zip(texts, row_voices)], add_special_tokens=False)[
            "input_ids"
        ]
        ids, masks, keep = [], [], []
        for text, prompt, speech in zip(texts, prompts, batch["speech_ids"]):
            completion = vocab.speech_to_token_ids(speech) + [vocab.end_of_audio_id]
            ids.append(prompt + completion)
            masks.append([0] * len(prompt) + [1] * len(completion))
            ok = bool(text.strip()) and len(speech) > 0 and (max_length is None or len(ids[-1]) <= max_length)
            keep.append(ok)
        return {"input_ids": ids, "completion_mask": masks, "keep": keep}

    cols = dataset.column_names
    out = dataset.map(encode, batched=True, remove_columns=cols, desc="tokenizing (text, speech) pairs")
    n = len(out)
    out = out.filter(lambda k: k, input_columns="keep").remove_columns("keep")
    return out, n - len(out)


def tokens_per_char_guard(dataset, margin: float) -> dict[str, float]:
    """The data's speech tokens per character and the runaway guard derived from it."""
    import numpy as np

    ratios = np.array(
        [len(s) / max(len(t.strip()), 1) for t, s in zip(dataset["text"], dataset["speech_ids"]) if s and t]
    )
    if len(ratios) == 0:
        raise ValueError("no (text, speech_ids) pair with both sides non-empty")
    p999 = float(np.quantile(ratios, 0.999))
    return {
        "tokens_per_char_mean": float(ratios.mean()),
        "tokens_per_char_p999": p999,
        "max_tokens_per_char": round(margin * p999, 3),
    }


def _tune(synth, transcribe, texts: list[str], candidates: dict, seed: int) -> dict:
    """TTS WER of each candidate setting (name -> synthesis overrides) on tuning sentences."""
    from modeling_speechtext.evaluation.text_to_token import tts_wer
    from modeling_speechtext.text_normalization import normalize_text

    return {
        name: tts_wer(transcribe, texts, synth.synthesize(texts, seed=seed, **settings), normalize=normalize_text)[
            "tts_wer"
        ]
        for name, settings in candidates.items()
    }


def choose_voice(synth, transcribe, texts: list[str], seed: int) -> dict[str, Any]:
    """Greedy TTS WER per voice on tuning sentences; the synthesizer keeps the best voice (ties: the first)."""
    scores = _tune(synth, transcribe, texts, {v: {"do_sample": False, "voice": v} for v in synth.voices}, seed)
    best = min(synth.voices, key=lambda v: scores[v])
    synth.config.voice = best
    return {"chosen_voice": best, "tune_tts_wer_by_voice": {v: round(w, 4) for v, w in scores.items()}}


def _eval_sentences(rows, n: int) -> tuple[list[str], list[list[int]]]:
    """Up to `n` distinct held-out sentences with the real tokens of their first utterance."""
    seen, texts, real = set(), [], []
    for text, ids in zip(rows["text"], rows["speech_ids"]):
        if text and ids and text not in seen:
            seen.add(text)
            texts.append(text)
            real.append(list(ids))
        if len(texts) >= n:
            break
    return texts, real


def choose_temperature(
    synth, transcribe, texts: list[str], grid: list[float], seed: int, mbr: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TTS WER per temperature (0 = greedy), and of MBR decoding when `mbr` holds its settings, on tuning sentences;
    the synthesizer keeps the best (ties: the cheaper one, i.e. plain decoding at the higher temperature)."""
    plain = {"num_beams": 1, "mbr_samples": 0}  # explicit: the synthesizer may come with beams or MBR chosen
    candidates: dict[Any, dict] = {
        t: {"do_sample": False, **plain} if t <= 0 else {"do_sample": True, "temperature": t, **plain} for t in grid
    }
    if mbr:
        candidates["mbr"] = {"do_sample": False, **mbr}
    scores = _tune(synth, transcribe, texts, candidates, seed)
    best = min(scores, key=lambda t: (scores[t], t == "mbr", -t if t != "mbr" else 0))
    chosen = candidates[best]
    synth.config = replace(
        synth.config,
        do_sample=chosen["do_sample"],
        temperature=chosen.get("temperature", synth.config.temperature),
        **{k: v for k, v in chosen.items() if k.startswith("mbr_") or k == "num_beams"},
    )
    out = {f"tune_tts_wer_t{t:g}": round(w, 4) for t, w in scores.items() if t != "mbr"}
    if mbr:
        out["tune_tts_wer_mbr"] = round(scores["mbr"], 4)
    return out | {"chosen_temperature": 0.0 if best == "mbr" else best, "chosen_mbr": best == "mbr"}


def evaluate_tts(
    synth,
    speech_tokenizer_dir: Path,
    rows,
    n: int,
    seed: int,
    grid: list[float] | None = None,
    voice_samples: int = 50,
    mbr: dict[str, Any] | None = None,
):
    """TTS WER of `synth` on `n` held-out sentences, next to the speech tokenizer's WER on their real tokens.

    With a temperature `grid`, the temperature is chosen on *other* held-out sentences (the next `n`), so the
    reported TTS WER is not tuned on the sentences it is measured on.
    """
    from modeling_speechtext.evaluation.text_to_token import tts_wer
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer
    from modeling_speechtext.text_normalization import normalize_text

    texts, real = _eval_sentences(rows, 2 * n if grid or synth.voices else n)
    tokenizer, _ = load_speech_tokenizer(speech_tokenizer_dir)
    metrics: dict[str, Any] = {}
    tune = texts[n:] or texts  # too few sentences: tune on the report set (flagged below)
    if synth.voices:
        metrics.update(choose_voice(synth, tokenizer.transcribe_tokens, tune[:voice_samples], seed))
    if grid:
        metrics.update(choose_temperature(synth, tokenizer.transcribe_tokens, tune, grid, seed, mbr))
    if grid or synth.voices:
        metrics["tuned_on_separate_sentences"] = len(texts) > n
        texts, real = texts[:n], real[:n]
    out = synth.synthesize(texts, return_dict=True, seed=seed)
    metrics.update(tts_wer(tokenizer.transcribe_tokens, texts, out.speech_ids, real, normalize=normalize_text))
    if synth.config.voice is not None:  # the same judge on real tokens of the chosen voice, where it has them
        voice = synth.config.voice
        own = {
            t: list(ids) for t, ids, v in zip(rows["text"], rows["speech_ids"], rows["voice"]) if v == voice and ids
        }
        keep = [i for i, t in enumerate(texts) if t in own]
        if keep:
            same_texts = [texts[i] for i in keep]
            scored = tts_wer(
                tokenizer.transcribe_tokens, same_texts, [out.speech_ids[i] for i in keep],
                [own[t] for t in same_texts], normalize=normalize_text,
            )  # fmt: skip
            metrics["chosen_voice_sentences"] = len(keep)
            metrics["chosen_voice_tts_wer"] = scored["tts_wer"]
            metrics["chosen_voice_real_token_wer"] = scored["real_token_wer"]
    greedy = synth.synthesize(texts, do_sample=False, mbr_samples=0, num_beams=1)
    metrics["tts_wer_greedy"] = tts_wer(tokenizer.transcribe_tokens, texts, greedy, normalize=normalize_text)[
        "tts_wer"
    ]
    metrics["synthesis_tokens_per_second"] = round(out.tokens_per_second, 1)
    metrics["runaway_fraction"] = sum(out.truncated) / max(len(texts), 1)
    metrics["runaway_fraction_before_retries"] = out.stats["runaways_before_retries"] / max(len(texts), 1)
    metrics["mean_speech_tokens_synth"] = sum(map(len, out.speech_ids)) / max(len(texts), 1)
    metrics["mean_speech_tokens_real"] = sum(map(len, real)) / max(len(texts), 1)
    return metrics


def inference_model(trainer):
    """The trained model, as a float32 model loaded from the saved folder would run.

    Why not `trainer.model`: for bf16/fp16 training Accelerate wraps the model's `forward` in autocast, and that
    wrapper outlives training; synthesizing with it ran the TTS WER evaluation in bf16 (measured: 11.32% in the
    run vs 10.58% for the same weights loaded afterwards, on the same sentences).
    """
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    return model.to(torch.float32).eval()


def train(args: TextToTokenArguments, training_args) -> dict[str, Any]:
    """Load -> tokenize -> SFTTrainer -> save (model, tokenizer, synthesis config) -> TTS WER -> metrics."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    from modeling_speechtext.generation.text_to_token import (
        SynthesisConfig,
        TextToTokenSynthesizer,
        add_voice_tokens,
        build_text_to_token_model,
        load_text_to_token_model,
    )
    from modeling_speechtext.hub.model_cards import text_to_token_card

    start = time.perf_counter()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(training_args.seed)
    paths = _resolve(args)
    output_dir = Path(training_args.output_dir)
    data = load_from_disk(str(paths["speech_tokens"]))
    for split in (args.train_split, args.eval_split):
        if split not in data:
            raise ValueError(f"{paths['speech_tokens']}: no split {split!r}; splits are {list(data)}")
        missing = {"text", "speech_ids"} - set(data[split].column_names)
        if missing:
            raise ValueError(f"{paths['speech_tokens']}[{split}] lacks columns {sorted(missing)}")
    train_rows, eval_rows = data[args.train_split], data[args.eval_split]
    if args.max_train_samples:
        train_rows = train_rows.select(range(min(args.max_train_samples, len(train_rows))))
    codebook_size = _codebook_size(args, paths["speech_tokenizer"], train_rows)

    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path or paths["text_tokenizer"])
    voices: list[str] = []
    if args.voice_conditioning:
        if "voice" not in train_rows.column_names:
            raise ValueError(f"voice_conditioning needs a `voice` column in {paths['speech_tokens']}")
        voices = add_voice_tokens(tokenizer, train_rows.unique("voice"))
        known = set(voices)
        eval_rows = eval_rows.filter(lambda v: v in known, input_columns="voice")  # voices it can condition on
    if args.model_name_or_path:
        model, tokenizer, vocab = load_text_to_token_model(args.model_name_or_path, codebook_size, tokenizer)
    else:
        model_cfg = {
            "model_type": args.model_type,
            "hidden_size": args.hidden_size,
            "num_hidden_layers": args.num_hidden_layers,
            "num_attention_heads": args.num_attention_heads,
            "num_key_value_heads": args.num_key_value_heads or args.num_attention_heads,
            "intermediate_size": args.intermediate_size,
            "max_position_embeddings": args.max_position_embeddings,
        }
        model, vocab = build_text_to_token_model(tokenizer, codebook_size, model_cfg)
    positions = getattr(model.config, "max_position_embeddings", None) or args.max_position_embeddings
    max_length = min(training_args.max_length or positions, positions)
    if training_args.max_length and training_args.max_length > positions:
        logger.warning(
            "max_length=%d exceeds the model's %d positions: using %d", training_args.max_length, positions, positions
        )
    train_ds, dropped = tokenize_pairs(train_rows, tokenizer, vocab, max_length, voices=bool(voices))
    eval_src = eval_rows.select(range(min(args.max_eval_samples or len(eval_rows), len(eval_rows))))
    eval_ds, _ = tokenize_pairs(eval_src, tokenizer, vocab, max_length, voices=bool(voices))
    guard = tokens_per_char_guard(train_rows, args.max_tokens_per_char_margin)

    if training_args.completion_only_loss is None:  # TRL's default for prompt/completion data: loss on the speech
        training_args.completion_only_loss = True
    elif not training_args.completion_only_loss:
        logger.warning("completion_only_loss=False: the loss also covers the text prompt")
    training_args.max_length = max_length
    push = take_push_settings(training_args)  # the final folder is uploaded at the end, card included
    reset_accelerator_precision()  # an earlier run in this process may have fixed another precision
    trainer = SFTTrainer(
        model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer
    )
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last:
        logger.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    eval_metrics = trainer.evaluate()
    if not trainer.is_world_process_zero():
        return {}
    synth_cfg = SynthesisConfig(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        batch_size=args.synthesis_batch_size,
        max_tokens_per_char=guard["max_tokens_per_char"],
        seed=training_args.seed,
        runaway_retries=args.runaway_retries,
        retry_temperature=args.retry_temperature,
        voice=Counter(train_rows["voice"]).most_common(1)[0][0] if voices else None,  # until the tuning below
    )
    synth = TextToTokenSynthesizer(inference_model(trainer), tokenizer, synth_cfg)
    synth.save_pretrained(output_dir)
    metrics: dict[str, Any] = {
        "train_loss": round(result.training_loss, 4),
        "steps": trainer.state.global_step,
        "resumed_from": Path(last).name if last else None,
        "eval_loss": round(eval_metrics["eval_loss"], 4),
        "train_examples": len(train_ds),
        "dropped_examples": dropped,
        "train_tokens": int(sum(map(len, train_ds["input_ids"]))) * int(training_args.num_train_epochs),
        "params": sum(p.numel() for p in model.parameters()),
        "init_from": args.model_name_or_path,
        "codebook_size": codebook_size,
        "vocab_size": len(tokenizer),
        **{k: round(v, 4) for k, v in guard.items()},
    }
    if args.tts_eval_samples and paths["speech_tokenizer"] is not None:
        tts = evaluate_tts(
            synth, paths["speech_tokenizer"], eval_rows, args.tts_eval_samples, training_args.seed,
            args.temperature_grid, args.voice_tune_samples,
            {"mbr_samples": args.mbr_samples, "mbr_temperature": args.mbr_temperature, "num_beams": args.mbr_num_beams}
            if args.mbr_samples else None,
        )  # fmt: skip
        metrics.update({k: round(v, 4) if isinstance(v, float) else v for k, v in tts.items()})
        synth.save_settings(output_dir)  # the chosen temperature, in synthesis and generation config alike
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png", "cross-entropy on speech tokens")
    card = text_to_token_card(metrics, model.config.model_type, args.speech_tokens)
    finish_run(output_dir, metrics, card, keep_checkpoints=args.keep_checkpoints)
    if push:  # (only the main process gets here)
        metrics["hub_url"] = upload_folder_to_hub(output_dir, **push)
    logger.info("metrics: %s", metrics)
    return metrics


@dataclass
class TextToTokenSFTConfig(AutoPrecisionMixin, SFTConfig):
    """`SFTConfig` with `bf16: auto` (bf16 autocast only on hardware with native bf16; TRL's default is on)."""


def _parser():
    from transformers import HfArgumentParser

    return HfArgumentParser((TextToTokenArguments, TextToTokenSFTConfig))


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the YAML holds fields of `TextToTokenArguments` and `SFTConfig`."""
    values = {"run_dir": str(run_dir), **config, "output_dir": str(output_dir)}
    args, training_args = _parser().parse_dict(values)
    return train(args, training_args)


def main(argv: list[str] | None = None) -> dict:
    from trl import TrlParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = TrlParser((TextToTokenArguments, TextToTokenSFTConfig))
    args, training_args = parser.parse_args_and_config(args=argv)
    return train(args, training_args)


if __name__ == "__main__":
    main()

__all__ = [
    "TextToTokenArguments",
    "TextToTokenSFTConfig",
    "inference_model",
    "tokenize_pairs",
    "tokens_per_char_guard",
    "evaluate_tts",
    "train",
    "run_stage",
]

"""Train the supervised speech tokenizer (Whisper encoder layers + pooling + VQ @ 12.5 Hz + CTC ASR head).

Usage (one process, as the demo pipeline runs it):

    python -m recipes.train_speech_tokenizer --config recipes/configs/demo/speech_tokenizer.yaml \\
        --run_dir runs/demo --output_dir runs/demo/speech_tokenizer

    # any field of the YAML can be overridden on the command line
    python -m recipes.train_speech_tokenizer --config recipes/configs/demo/speech_tokenizer.yaml \\
        --run_dir runs/demo --max_steps 200 --codebook_size 256

    # data-parallel (CPU/gloo here; GPU DDP/FSDP configs in recipes/accelerate/)
    accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml -m recipes.train_speech_tokenizer \\
        --config recipes/configs/demo/speech_tokenizer.yaml --run_dir runs/demo

Inputs: `<run_dir>/speech_corpus/dataset` (DatasetDict train/validation/test_unseen_voices) and the ASR
vocabulary `<run_dir>/text_tokenizer` (byte-level BPE). Output: a folder loadable with
`AutoModel.from_pretrained(..., trust_remote_code=True)` + `AutoFeatureExtractor` + `AutoTokenizer`,
`metrics.json`, `loss_curves.png`, `codebook_usage.png`. Interrupted runs resume from the last checkpoint.

Why a custom loop and not `Trainer`: the recipe needs a quantizer warm-up, a codebook initialised from encoder
outputs in the middle of training and length-bucketed batches of cached features; those are a few lines here
and awkward callbacks there. It still runs under `accelerate` (DDP; the EMA codebook statistics are
all-reduced). Speed settings follow CALIBRATION.md: fused AdamW, dropout 0, bf16 autocast where the hardware
has native bf16 (`bf16: auto`, modeling_speechtext/hardware.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from recipes.speech_tokenizer_io import _checkpoints, last_checkpoint, load_checkpoint, plot, save_checkpoint  # noqa: E402,F401

logger = logging.getLogger("train_speech_tokenizer")


@dataclass
class ScriptArguments:
    """Where things are."""

    run_dir: str | None = field(
        default=None, metadata={"help": "run folder holding speech_corpus/ and text_tokenizer/"}
    )
    dataset_path: str | None = field(default=None, metadata={"help": "default: <run_dir>/speech_corpus/dataset"})
    text_tokenizer: str | None = field(
        default=None, metadata={"help": "ASR vocabulary; default <run_dir>/text_tokenizer"}
    )
    output_dir: str | None = field(default=None, metadata={"help": "default: <run_dir>/speech_tokenizer"})
    feature_cache_dir: str | None = field(default=None, metadata={"help": "log-mel cache; default <output_dir>/cache"})


@dataclass
class SpeechTokenizerModelArguments:
    """`SpeechTokenizerConfig` fields (see configuration_speech_tokenizer.py for what each does)."""

    num_mel_bins: int = 80
    d_model: int = 256
    encoder_layers: int = 5
    quantize_position: int = 3
    encoder_attention_heads: int = 4
    encoder_ffn_dim: int = 1024
    max_source_positions: int = 1500
    pooling_kernel_size: int = 4
    codebook_size: int = 512
    codebook_dim: int | None = 64
    use_cosine_codes: bool = True
    ema_decay: float = 0.99
    quantizer_centering_decay: float | None = 0.95
    commitment_weight: float = 1.0
    dead_code_threshold: float = 0.03
    restart_interval: int = 100
    causal_conv: bool = False
    causal_block_size: int | None = None
    attention_window: int | None = None
    ctc_upsample: int = 1
    aux_ctc_weight: float = 0.3
    aux_ctc_units: str = field(
        default="asr", metadata={"help": 'auxiliary 50 Hz CTC targets: "asr" (subwords) or "chars" (letters)'}
    )
    dropout: float = 0.0
    init_from_whisper: str | None = field(
        default=None, metadata={"help": "a Whisper checkpoint (Hub id or folder) whose encoder initialises ours"}
    )


@dataclass
class SpeechTokenizerTrainingArguments:
    """Optimisation, schedule, batching, logging."""

    seed: int = 0
    max_steps: int = 1000
    max_minutes: float | None = field(default=None, metadata={"help": "stop early after this wall time"})
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_batch_frames: int = 12000
    max_batch_size: int = 48
    quantizer_warmup_steps: int = 200
    quantizer_start_loss: float | None = field(
        default=None,
        metadata={
            "help": "also wait until the running CTC loss is below this (up to 2x quantizer_warmup_steps or 60% of max_steps)"
        },
    )
    codebook_init_batches: int = 8
    kmeans_iters: int = 10
    bf16: str = field(
        default="auto",
        metadata={"help": "bf16 autocast: auto (by the hardware, modeling_speechtext/hardware.py), true or false"},
    )
    sortagrad: bool = field(default=True, metadata={"help": "first epoch shortest clips first (helps CTC start)"})
    label_text: str = "cased"
    max_train_clips: int | None = None
    max_eval_clips: int | None = 400
    logging_steps: int = 25
    eval_steps: int = 250
    save_steps: int = 250
    save_total_limit: int = 1
    keep_feature_cache: bool = field(default=False, metadata={"help": "keep <output_dir>/cache after training"})
    num_threads: int | None = None
    resume: bool = True
    # Feature augmentation for unseen voices (modeling_speechtext/training/speech_augment.py); off by default.
    mel_warp: float = field(default=0.0, metadata={"help": "random mel-axis warp in [1 - x, 1 + x] per clip"})
    freq_masks: int = 0
    freq_mask_width: int = 0
    time_masks: int = 0
    time_mask_width: int = 0


ARG_CLASSES = (ScriptArguments, SpeechTokenizerModelArguments, SpeechTokenizerTrainingArguments)


# ---------------------------------------------------------------------------------------------- setup
def resolve_paths(script: ScriptArguments) -> dict[str, Path]:
    run_dir = Path(script.run_dir) if script.run_dir else None

    def pick(value, default_rel):
        if value:
            return Path(value)
        if run_dir is None:
            raise ValueError(f"pass --run_dir or an explicit path for {default_rel}")
        return run_dir / default_rel

    paths = {
        "dataset": pick(script.dataset_path, "speech_corpus/dataset"),
        "text_tokenizer": pick(script.text_tokenizer, "text_tokenizer"),
        "output_dir": pick(script.output_dir, "speech_tokenizer"),
    }
    paths["cache"] = Path(script.feature_cache_dir) if script.feature_cache_dir else paths["output_dir"] / "cache"
    if not paths["dataset"].is_dir():
        raise FileNotFoundError(f"speech corpus not found at {paths['dataset']} (run the speech_corpus stage)")
    if not (paths["text_tokenizer"] / "tokenizer_config.json").is_file():
        raise FileNotFoundError(
            f"ASR vocabulary not found at {paths['text_tokenizer']} (run the text_tokenizer stage)"
        )
    return paths


def build_model(model_args: SpeechTokenizerModelArguments, tokenizer):
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    fields_ = {k: v for k, v in asdict(model_args).items() if k != "init_from_whisper"}
    config = SpeechTokenizerConfig(**fields_, asr_vocab_size=len(tokenizer))
    model = SpeechTokenizerModel(config)
    model.set_asr_vocabulary(tokenizer)
    if model_args.init_from_whisper:
        from transformers import WhisperModel

        whisper = WhisperModel.from_pretrained(model_args.init_from_whisper)
        fresh = model.load_whisper_encoder_weights(whisper.get_encoder().state_dict())
        logger.info("initialised from %s's encoder; new: %s", model_args.init_from_whisper, fresh)
    return model


def lr_lambda(args: SpeechTokenizerTrainingArguments):
    """Linear warm-up, then cosine decay to `min_lr_ratio`."""

    def f(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / max(args.warmup_steps, 1)
        progress = min(1.0, (step - args.warmup_steps) / max(args.max_steps - args.warmup_steps, 1))
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def make_optimizer(model, args: SpeechTokenizerTrainingArguments):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() < 2 or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # fused AdamW: the single biggest CPU speed-up measured (CALIBRATION.md)
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.98), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.98))


# ---------------------------------------------------------------------------------------------- checkpoints
@dataclass
class Data:
    train: Any
    validation: Any
    labels: list[list[int]]
    aux_labels: list[list[int]] | None = None


def prepare_data(paths, feature_extractor, tokenizer, args, accelerator, config) -> Data:
    from datasets import load_from_disk

    from modeling_speechtext.data.speech_features import encode_char_labels, encode_labels, load_or_compute_features

    corpus = load_from_disk(str(paths["dataset"]))
    for split in ("train", "validation"):
        if split not in corpus:
            raise ValueError(f"{paths['dataset']}: no {split!r} split (has {list(corpus)})")
    cache = paths["cache"]
    with accelerator.main_process_first():  # rank 0 computes the features, the others read its cache
        train = load_or_compute_features(corpus["train"], feature_extractor, cache, "train", args.max_train_clips)
        val = load_or_compute_features(
            corpus["validation"], feature_extractor, cache, "validation", args.max_eval_clips
        )
    labels = encode_labels(tokenizer, train.texts, args.label_text)
    if not any(labels):
        raise ValueError("every ASR label is empty: check the corpus text column")
    aux = encode_char_labels(config, train.texts) if config.aux_ctc_units == "chars" else None
    return Data(train, val, labels, aux)


def quantizer_ready(args, step: int, ctc_ema: float | None) -> bool:
    """Quantize once the encoder has learned something: k-means on untrained outputs collapses to a few codes."""
    latest = min(2 * args.quantizer_warmup_steps, int(0.6 * args.max_steps))  # leave time to train with the VQ
    if step < min(args.quantizer_warmup_steps, latest):
        return False
    if args.quantizer_start_loss is None or step >= latest:
        return True
    return ctc_ema is not None and ctc_ema < args.quantizer_start_loss


def rank_zero_decides(accelerator, decision: bool) -> bool:
    """Rank 0's decision, on every rank.

    Why: each rank sees its own CTC loss and its own clock, so deciding alone lets one rank switch the quantizer
    on (or stop for `max_minutes`) a step before another: the DDP all-reduces then pair different graphs, or one
    rank waits forever for a step its peers never take.
    """
    if accelerator.num_processes == 1:
        return decision
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list([decision], from_process=0)[0])


def init_codebook(model, data: Data, args, step_seed: int) -> int:
    """Fill the codebook from real pooled encoder outputs (k-means), the cure for VQ collapse."""
    import torch

    from modeling_speechtext.data.speech_features import collate, make_batches

    vectors = []
    batches = make_batches(data.train.lengths, args.max_batch_frames, args.max_batch_size, seed=step_seed)
    model.eval()
    with torch.no_grad():
        for batch in batches[: args.codebook_init_batches]:
            feats, mask, _ = collate(data.train, batch)
            _, _, pooled, valid = model._encode_pre_quantizer(feats, mask)
            vectors.append(pooled[valid])
    model.train()
    vectors = torch.cat(vectors)
    model.quantizer.init_codebook(vectors, args.kmeans_iters, generator=torch.Generator().manual_seed(step_seed))
    return len(vectors)


def train(script: ScriptArguments, model_args: SpeechTokenizerModelArguments, args: SpeechTokenizerTrainingArguments):
    """The whole recipe; returns the metrics dict (also written to `output_dir/metrics.json`)."""
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import AutoTokenizer

    from modeling_speechtext.data.speech_features import LABEL_MODES, collate, collate_aux, make_batches
    from modeling_speechtext.generation.speech_tokenization import build_feature_extractor
    from modeling_speechtext.hardware import reset_accelerator_precision, resolve_bf16
    from modeling_speechtext.training.speech_augment import FeatureAugmentation, augment_features

    if args.label_text not in LABEL_MODES:
        raise ValueError(f"label_text must be one of {LABEL_MODES}, got {args.label_text!r}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    augmentation = FeatureAugmentation(
        args.mel_warp, args.freq_masks, args.freq_mask_width, args.time_masks, args.time_mask_width
    )
    paths = resolve_paths(script)
    out_dir = paths["output_dir"]
    out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_bf16(args.bf16, use_cpu=not torch.cuda.is_available())
    reset_accelerator_precision()  # an earlier run in this process may have fixed another precision
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="bf16" if precision.bf16 else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # VQ unused in warm-up
    )
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(paths["text_tokenizer"]))
    model = build_model(model_args, tokenizer)
    feature_extractor = build_feature_extractor(model.config)
    data = prepare_data(paths, feature_extractor, tokenizer, args, accelerator, model.config)
    optimizer = make_optimizer(model, args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args))
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "codebook_initialized": False, "history": [], "evals": []}
    ckpt = last_checkpoint(out_dir) if args.resume else None
    if ckpt is not None:
        model, opt_state, state = load_checkpoint(ckpt)
        optimizer = make_optimizer(model, args)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args))
        optimizer.load_state_dict(opt_state["optimizer"])
        scheduler.load_state_dict(opt_state["scheduler"])
        logger.info("resumed from %s (step %d)", ckpt, state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    raw.train()

    start, audio_seen, step_start = time.perf_counter(), 0.0, time.perf_counter()
    window = {"loss": 0.0, "ctc": 0.0, "commit": 0.0, "aux": 0.0, "ppl": 0.0, "n": 0, "audio": 0.0}
    done = state["step"] >= args.max_steps
    while not done:
        shuffle = not (args.sortagrad and state["epoch"] == 0)  # SortaGrad (Deep Speech 2): short clips first
        batches = make_batches(
            data.train.lengths,
            args.max_batch_frames,
            args.max_batch_size,
            seed=args.seed * 1000 + state["epoch"],
            shuffle=shuffle,
        )
        # the same number of batches on every rank (the remainder is dropped): a rank with fewer would start its
        # next epoch early, and one with none would spin over empty epochs while its peers wait in DDP's all-reduce
        per_rank = len(batches) // accelerator.num_processes
        if per_rank == 0:
            raise ValueError(
                f"{len(batches)} batch(es) per epoch cannot feed {accelerator.num_processes} processes: lower "
                "max_batch_frames / max_batch_size or launch fewer processes"
            )
        batches = batches[accelerator.process_index :: accelerator.num_processes][:per_rank]
        for b_index in range(state["batch_in_epoch"], len(batches)):
            step = state["step"]
            if not state["codebook_initialized"] and rank_zero_decides(
                accelerator, quantizer_ready(args, step, state.get("ctc_ema"))
            ):
                n = init_codebook(raw, data, args, args.seed + step)
                state["codebook_initialized"] = True
                state["quantizer_start_step"] = step
                logger.info(  # on every rank: the ranks must agree on this step (rank_zero_decides)
                    "[rank %d] step %d: codebook initialised from %d encoder outputs (k-means)",
                    accelerator.process_index, step, n,
                )  # fmt: skip
            batch = batches[b_index]
            feats, mask, labels = collate(data.train, batch, data.labels)
            feats = augment_features(feats, mask, augmentation)
            with accelerator.autocast():
                out = model(
                    feats,
                    mask,
                    labels=labels,
                    quantize=state["codebook_initialized"],
                    aux_labels=collate_aux(batch, data.aux_labels),
                )
            accelerator.backward(out.loss)
            if args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batch_in_epoch"] = b_index + 1
            seconds = sum(data.train.durations[i] for i in batch) * accelerator.num_processes
            audio_seen += seconds
            window["audio"] += seconds
            window["n"] += 1
            window["loss"] += out.loss.item()
            window["ctc"] += out.ctc_loss.item()
            ctc_ema = state.get("ctc_ema")
            state["ctc_ema"] = out.ctc_loss.item() if ctc_ema is None else 0.9 * ctc_ema + 0.1 * out.ctc_loss.item()
            window["commit"] += out.commitment_loss.item() if out.commitment_loss is not None else 0.0
            window["aux"] += out.aux_ctc_loss.item() if out.aux_ctc_loss is not None else 0.0
            window["ppl"] += out.codebook_perplexity.item() if out.codebook_perplexity is not None else 0.0
            step = state["step"]
            over_time = args.max_minutes is not None and rank_zero_decides(
                accelerator, time.perf_counter() - start > 60 * args.max_minutes
            )
            done = step >= args.max_steps or over_time
            if step % args.logging_steps == 0 or done:
                elapsed = time.perf_counter() - step_start
                row = {k: round(window[k] / window["n"], 4) for k in ("loss", "ctc", "commit", "aux", "ppl")}
                row.update(step=step, lr=scheduler.get_last_lr()[0], audio_s_per_s=round(window["audio"] / elapsed, 1))
                state["history"].append(row)
                if accelerator.is_main_process:
                    logger.info("step %d %s", step, json.dumps(row))
                window = dict.fromkeys(window, 0.0)
                window["n"] = 0
                step_start = time.perf_counter()
            if (step % args.eval_steps == 0 or done) and accelerator.is_main_process and state["codebook_initialized"]:
                state["evals"].append(quick_eval(raw, data.validation, args, step))
                raw.train()
            if (step % args.save_steps == 0 or done) and accelerator.is_main_process:
                save_checkpoint(raw, optimizer, scheduler, state, out_dir, args.save_total_limit)
            if done:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    train_seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    metrics = {}
    if accelerator.is_main_process:
        # evaluate in float32, as the saved model runs: the bf16 autocast wrapper of `forward` outlives training
        raw = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        metrics = finish(raw, feature_extractor, tokenizer, data, paths, state, args, train_seconds, audio_seen)
    accelerator.wait_for_everyone()
    return metrics


def quick_eval(model, validation, args, step: int) -> dict:
    from modeling_speechtext.evaluation.speech_tokenizer import evaluate_speech_tokenizer

    result, _, _ = evaluate_speech_tokenizer(model, validation, args.max_batch_frames * 2, args.max_batch_size * 2)
    row = {
        "step": step,
        **{k: result[k] for k in ("wer", "cer", "wer_no_vq", "codebook_usage", "codebook_perplexity")},
    }
    logger.info("eval %s", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def finish(model, feature_extractor, tokenizer, data, paths, state, args, train_seconds, audio_seen) -> dict:
    """Save the final folder, evaluate every split (through the tokens), write metrics.json and the plots."""
    from datasets import load_from_disk

    from modeling_speechtext.data.speech_features import load_or_compute_features
    from modeling_speechtext.evaluation.speech_tokenizer import evaluate_speech_tokenizer
    from modeling_speechtext.hub.model_cards import speech_tokenizer_card

    out_dir = paths["output_dir"]
    model.eval()
    model.save_pretrained(out_dir)
    feature_extractor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # so AutoTokenizer works on the folder too (the model has its own copy)
    corpus = load_from_disk(str(paths["dataset"]))
    splits, counts = {}, {}
    for name in corpus:
        fs = data.validation if name == "validation" else None
        if fs is None:
            fs = load_or_compute_features(corpus[name], feature_extractor, paths["cache"], name, args.max_eval_clips)
        result, _, _ = evaluate_speech_tokenizer(model, fs, args.max_batch_frames * 2, args.max_batch_size * 2)
        counts[name] = result.pop("codebook_counts")
        splits[name] = result
    cfg = model.config
    metrics = {
        "steps": state["step"],
        "quantizer_start_step": state.get("quantizer_start_step"),
        "train_minutes": round(train_seconds / 60, 2),
        "training_audio_hours": round(data.train.hours, 3),
        "training_clips": len(data.train),
        "train_audio_seconds_per_second": round(audio_seen / max(train_seconds, 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "frame_rate": cfg.frame_rate,
        "codebook_size": cfg.codebook_size,
        "bitrate": cfg.bitrate,
        "final_train_loss": state["history"][-1]["loss"] if state["history"] else None,
        **{f"{name}_{k}": v for name, r in splits.items() for k, v in r.items() if not isinstance(v, list)},
        "examples": {name: r["examples"] for name, r in splits.items()},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "README.md").write_text(speech_tokenizer_card(metrics))
    (out_dir / "training_log.json").write_text(json.dumps({"history": state["history"], "evals": state["evals"]}))
    plot(state, counts, cfg.codebook_size, out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the final folder supersedes them
    if not args.keep_feature_cache and paths["cache"] == out_dir / "cache":
        shutil.rmtree(paths["cache"], ignore_errors=True)  # hundreds of MB at tiny scale; not part of the model
    return {k: v for k, v in metrics.items() if k != "examples"}


def parse_config(config: dict[str, Any]):
    """A stage config dict -> the three argument dataclasses (unknown keys are an error: typos must not pass)."""
    from transformers import HfArgumentParser

    known = {f.name for cls in ARG_CLASSES for f in fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"speech_tokenizer config: unknown key(s) {unknown}")
    return HfArgumentParser(ARG_CLASSES).parse_dict(config)


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry point (`speechtext pipeline`): train into `output_dir` from the corpora in `run_dir`."""
    config = {**config, "run_dir": str(run_dir), "output_dir": str(output_dir)}
    script, model_args, args = parse_config(config)
    return train(script, model_args, args)


def main(argv: list[str] | None = None) -> dict:
    try:
        from trl import TrlParser as Parser  # `--config x.yaml` + CLI overrides, as TRL's scripts
    except ImportError:  # pragma: no cover - trl is in the [train] extra
        from transformers import HfArgumentParser as Parser
    parser = Parser(ARG_CLASSES)
    if hasattr(parser, "parse_args_and_config"):
        script, model_args, args = parser.parse_args_and_config(argv)[:3]
    else:
        script, model_args, args = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    metrics = train(script, model_args, args)
    if metrics:
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

__all__ = [
    "ScriptArguments",
    "SpeechTokenizerModelArguments",
    "SpeechTokenizerTrainingArguments",
    "build_model",
    "rank_zero_decides",
    "train",
    "run_stage",
    "main",
]

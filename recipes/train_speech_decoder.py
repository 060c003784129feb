"""Train the speech decoder: speech tokens -> log-mel (conditional flow matching) -> waveform (Griffin-Lim).

Reads a run folder's `speech_tokens` stage (token ids per utterance), `speech_corpus` stage (the audio, joined
on `id`) and `speech_tokenizer` stage (codebook size, and its ASR for resynthesis WER). Writes a
`SpeechDecoderModel` folder (`AutoModel.from_pretrained(dir, trust_remote_code=True)`), `metrics.json` and
`mels.png` (decoded vs true log-mel of validation utterances) into --output_dir.

    # the demo preset, after `speechtext pipeline --preset demo --output_dir runs/demo` built the inputs
    python -m recipes.train_speech_decoder --config recipes/configs/demo/speech_decoder.yaml \
        --run_dir runs/demo --output_dir runs/demo/speech_decoder

    # the ablation: plain L1 mel regression with the same network
    python -m recipes.train_speech_decoder --config recipes/configs/demo/speech_decoder.yaml \
        --run_dir runs/demo --output_dir runs/demo_decoder_regression --objective regression

    # with the token-consistency loss (the frozen tokenizer must read the decoded mel back as its tokens)
    python -m recipes.train_speech_decoder --config recipes/configs/tiny/speech_decoder.yaml \
        --run_dir runs/tiny --output_dir runs/tiny_decoder_tc --token_loss_weight 0.1

    # several processes or GPUs
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m recipes.train_speech_decoder \
        --config recipes/configs/paper/speech_decoder.yaml --run_dir runs/paper --output_dir runs/paper/speech_decoder

Any YAML key can be overridden on the command line (`--max_steps 50`). An interrupted run resumes from the
last `checkpoint-*` in --output_dir. As a pipeline stage: `recipes.train_speech_decoder:run_stage`.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, SchedulerType, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from modeling_speechtext.hardware import AutoPrecisionMixin, reset_accelerator_precision
from modeling_speechtext.hub.model_cards import speech_decoder_card
from modeling_speechtext.hub.upload import take_push_settings, upload_folder_to_hub
from modeling_speechtext.models.speech_decoder.configuration_speech_decoder import SpeechDecoderConfig
from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
from recipes.common import finish_run
from recipes.speech_decoder_data import MelDataset, _load_splits, _mel_items, _waveform, collate  # noqa: F401 - benches

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    run_dir: str = field(default="runs/demo", metadata={"help": "run folder holding the earlier stages"})
    speech_tokens_dir: str | None = field(default=None, metadata={"help": "default: RUN_DIR/speech_tokens/dataset"})
    speech_corpus_dir: str | None = field(default=None, metadata={"help": "default: RUN_DIR/speech_corpus/dataset"})
    speech_tokenizer_dir: str | None = field(default=None, metadata={"help": "default: RUN_DIR/speech_tokenizer"})
    voice_embedding: bool = field(
        default=True, metadata={"help": "learn one embedding per training voice (else train on target_voice only)"}
    )
    target_voice: str | None = field(default=None, metadata={"help": "output voice; default: most frequent"})
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "fine-tune this trained decoder (folder or Hub id) instead of a fresh one; its architecture, "
            "voices and mel statistics are kept, the model arguments are ignored"
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training utterances"})
    max_train_tokens: int = field(default=40, metadata={"help": "random crops of at most this many tokens"})
    eval_samples: int = field(default=50, metadata={"help": "utterances per evaluation split"})
    eval_batch_size: int = field(default=16)
    plot_samples: int = field(default=3)


@dataclass
class ModelArguments:
    hidden_size: int = 128
    encoder_layers: int = 2
    estimator_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    dropout: float = 0.0
    block_size: int = 5
    context_blocks: int = 0
    objective: str = field(default="flow_matching", metadata={"help": "flow_matching | regression"})
    num_steps: int = 10
    cfg_strength: float = 0.7
    cfg_dropout: float = 0.2
    prior_loss_weight: float = 0.0
    t_scheduler: str = "cosine"
    griffin_lim_iters: int = 32
    first_chunk_tokens: int = 10
    chunk_tokens: list[int] = field(default_factory=lambda: [25, 50, 100, 150, 200])
    condition: str = field(default="tokens", metadata={
        "help": "tokens | tokenizer_states | both: start from a token embedding, from a frozen copy of the speech "
                "tokenizer's post-quantizer layers (its ASR head's input), or their sum"})  # fmt: skip
    tokenizer_states_block_causal: bool = field(default=True, metadata={
        "help": "the copied layers see current and earlier blocks only (exact streaming)"})  # fmt: skip


@dataclass
class DecoderTrainingArguments(AutoPrecisionMixin, TrainingArguments):
    """TrainingArguments with defaults for this small CPU model; `bf16: auto` picks the precision by the hardware."""

    output_dir: str = field(default="runs/demo/speech_decoder")
    learning_rate: float = 1e-3
    lr_scheduler_type: SchedulerType | str = "cosine"
    warmup_steps: float = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    per_device_train_batch_size: int = 16
    logging_steps: float = 25
    save_steps: float = 200
    save_total_limit: int | None = 1
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0
    token_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "> 0 adds the token-consistency loss (modeling_speechtext/training/token_consistency_loss.py): "
            "cross-entropy of the input tokens when the frozen speech tokenizer reads the decoded mel"
        },
    )
    token_loss_temperature: float = field(default=0.1, metadata={"help": "softmax temperature over code cosines"})
    token_loss_bridge_samples: int = field(
        default=200, metadata={"help": "training utterances to fit the decoder-mel -> tokenizer-feature map on"}
    )


# ------------------------------------------------------------------- training (data: recipes/speech_decoder_data.py)


def _token_loss(model: SpeechDecoderModel, items: list[dict], audio_split, tokenizer_dir: Path, args, seed: int):
    """The frozen tokenizer and the decoder-mel -> tokenizer-feature map, fitted on some training utterances."""
    from modeling_speechtext.generation.speech_tokenization import extract_features, load_speech_tokenizer
    from modeling_speechtext.training.token_consistency_loss import TokenConsistencyLoss, fit_mel_bridge

    tokenizer, feature_extractor = load_speech_tokenizer(tokenizer_dir)
    picked = random.Random(seed).sample(items, min(len(items), args.token_loss_bridge_samples))
    feats = [
        torch.from_numpy(extract_features(feature_extractor, _waveform(audio_split, it["row"]["audio_index"])))
        for it in picked
    ]
    bridge = fit_mel_bridge([it["mel"].float() for it in picked], feats)
    logger.info("mel bridge fitted on %d frames: R^2 %.4f", bridge["frames"], bridge["r2"])
    loss = TokenConsistencyLoss(tokenizer, bridge["weight"], args.token_loss_temperature).to(model.device)
    return loss, {"token_loss_bridge_r2": round(bridge["r2"], 4), "token_loss_bridge_frames": bridge["frames"]}


class DecoderTrainer(Trainer):
    """`Trainer` plus the optional token-consistency loss on the decoder's mel estimate (logged on its own)."""

    def __init__(self, *args, token_loss=None, token_loss_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_loss, self.token_loss_weight = token_loss, token_loss_weight
        self._token_sums: torch.Tensor | None = None  # loss, accuracy, count since the last log (on device: no sync)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss
        if self.token_loss is not None and self.token_loss_weight > 0:
            decoder = self.accelerator.unwrap_model(model)
            mel = decoder.denormalize_mel(outputs.mel_estimate)
            tc = self.token_loss(mel, inputs["input_ids"], inputs.get("attention_mask"), outputs.estimate_weight)
            loss = loss + self.token_loss_weight * tc.loss
            sums = torch.stack([tc.loss.detach(), tc.accuracy.detach(), torch.ones_like(tc.loss)])
            self._token_sums = sums if self._token_sums is None else self._token_sums + sums
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self._token_sums is not None:
            loss, accuracy, count = self._token_sums.tolist()
            logs["token_loss"], logs["token_accuracy"] = round(loss / count, 4), round(accuracy / count, 4)
            self._token_sums = None
        super().log(logs, *args, **kwargs)


# ----------------------------------------------------------------------------------------------------- evaluation


def evaluate(model: SpeechDecoderModel, splits, data: DataArguments, output_dir: Path, seed: int) -> dict:
    """Mel L1 / MCD, resynthesis WER next to original-audio WER, streaming vs offline, and the mel plot."""
    from modeling_speechtext.evaluation import speech_decoder as ev

    model.eval()
    metrics: dict = {}
    tokenizer_dir = Path(data.speech_tokenizer_dir or Path(data.run_dir) / "speech_tokenizer")
    tokenizer = fe = None
    if (tokenizer_dir / "config.json").is_file():
        from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

        tokenizer, fe = load_speech_tokenizer(tokenizer_dir)
        if tokenizer.asr_vocabulary is None:
            tokenizer = None
    if tokenizer is None:
        logger.warning("no speech tokenizer with ASR at %s: resynthesis WER skipped", tokenizer_dir)
    names = model.config.voice_names
    target = model.config.default_voice  # None for a single-voice decoder
    plots = []
    for split in ("validation", "test_unseen_voices"):
        if split not in splits:
            continue
        rows, audio = splits[split]
        rows = [r for r in rows if len(r["speech_ids"]) > 0]
        random.Random(seed).shuffle(rows)
        items = _mel_items(model, rows[: data.eval_samples], audio, names, f"eval mel {split}")
        if not items:
            continue
        tokens = [it["input_ids"].tolist() for it in items]
        # mel distances: each utterance in its own voice when the decoder knows it, else the target voice
        own = [it["row"]["voice"] if it["row"]["voice"] in names else target for it in items]
        mels = []
        for voice in sorted(set(own), key=str):
            idx = [i for i, v in enumerate(own) if v == voice]
            m, _ = ev.decode_batched(model, [tokens[i] for i in idx], voice=voice, batch_size=data.eval_batch_size)
            mels += list(zip(idx, m))
        mels = [m for _, m in sorted(mels, key=lambda p: p[0])]
        true = [it["mel"].float() for it in items]
        metrics[f"mel_l1_{split}"] = round(sum(map(ev.mel_l1, mels, true)) / len(items), 4)
        metrics[f"mcd_{split}"] = round(sum(map(ev.mel_cepstral_distortion, mels, true)) / len(items), 3)
        if split == "validation":
            plots = [(f"{it['row']['id']} ({v})", m, t) for it, v, m, t in zip(items, own, mels, true)]
        metrics[f"eval_utterances_{split}"] = len(items)
        if tokenizer is not None:
            texts = [it["row"]["text"] for it in items]
            metrics[f"wer_original_{split}"] = round(ev.word_error_rate(texts, tokenizer.transcribe_tokens(tokens)), 4)
            _, waves = ev.decode_batched(model, tokens, voice=target, batch_size=data.eval_batch_size)
            hyps = ev.transcribe_waveforms(tokenizer, fe, waves)
            metrics[f"wer_resynthesis_{split}"] = round(ev.word_error_rate(texts, hyps), 4)
            if split == "validation":  # what Griffin-Lim alone loses: vocode the *true* mel
                ceiling = [model.vocode(t[None])[0] for t in true]
                hyps = ev.transcribe_waveforms(tokenizer, fe, ceiling)
                metrics["wer_vocoder_only_validation"] = round(ev.word_error_rate(texts, hyps), 4)
    if plots:
        ev.plot_mels(plots[: data.plot_samples], output_dir / "mels.png")
    metrics.update(_streaming_check(model, splits, seed))
    return metrics


def _streaming_check(model: SpeechDecoderModel, splits, seed: int) -> dict:
    """Streamed vs offline decode of the longest validation utterance (mel difference, border smoothness)."""
    from modeling_speechtext.evaluation import speech_decoder as ev

    rows = splits.get("validation", ([], None))[0]
    if not rows:
        return {}
    ids = list(max(rows, key=lambda r: len(r["speech_ids"]))["speech_ids"])
    if len(ids) <= model.config.first_chunk_tokens:
        return {}
    offline = model.generate_mel(ids, seed=seed).mel[0]
    chunks = list(model.decode_stream(ids, seed=seed, return_mel=True))
    audio = torch.cat([a for a, _ in chunks])
    borders = torch.cumsum(torch.tensor([a.shape[0] for a, _ in chunks[:-1]]), 0).tolist()
    return {
        "stream_vs_offline_mel_max_abs_diff": float((torch.cat([m for _, m in chunks]) - offline).abs().max()),
        "stream_border_jump": round(ev.border_discontinuity(audio, borders), 3),
        "stream_chunks": len(chunks),
    }


# ----------------------------------------------------------------------------------------------------------- main


def main(data: DataArguments, model_args: ModelArguments, training_args: DecoderTrainingArguments) -> dict:
    from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig

    start = time.perf_counter()
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(training_args.seed)

    # 1. inputs: token ids + audio, the tokenizer's codebook
    splits = _load_splits(data)
    if "train" not in splits:
        raise ValueError(f"no train split in {data.speech_tokens_dir or data.run_dir}")
    tokenizer_dir = Path(data.speech_tokenizer_dir or Path(data.run_dir) / "speech_tokenizer")
    if not (tokenizer_dir / "config.json").is_file():
        raise FileNotFoundError(f"{tokenizer_dir}/config.json not found: run the speech_tokenizer stage first")
    tokenizer_config = SpeechTokenizerConfig.from_pretrained(tokenizer_dir)
    train_rows, train_audio = splits["train"]
    voices = Counter(r["voice"] for r in train_rows)
    target = data.target_voice or voices.most_common(1)[0][0]
    if target not in voices:
        raise ValueError(f"target_voice {target!r} is not a training voice; training voices: {sorted(voices)}")
    if not data.voice_embedding:
        train_rows = [r for r in train_rows if r["voice"] == target]
    voice_names = sorted(voices) if data.voice_embedding else []
    if data.max_train_samples:
        train_rows = random.Random(training_args.seed).sample(train_rows, min(len(train_rows), data.max_train_samples))

    # 2. model config; mel targets and their statistics
    if data.init_from:  # its mel statistics normalise the targets it was trained on: keep them
        model = _pretrained_decoder(data.init_from, tokenizer_dir, tokenizer_config, voice_names)
        target = model.config.default_voice or target
        if model.config.condition != model_args.condition:
            logger.warning("init_from %s: its condition %r is kept (the model arguments ask for %r)",
                           data.init_from, model.config.condition, model_args.condition)  # fmt: skip
    else:
        states = model_args.condition != "tokens"
        model = SpeechDecoderModel(
            SpeechDecoderConfig(
                codebook_size=tokenizer_config.codebook_size,
                tokens_per_second=tokenizer_config.tokens_per_second,
                voice_names=voice_names,
                default_voice=target if voice_names else None,
                tokenizer_config=_tokenizer_config_dict(tokenizer_config) if states else None,
                **vars(model_args),
            )
        )
        if states:  # the frozen copy of the tokenizer's post-quantizer layers (a resumed run reloads it too)
            from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

            model.encoder.tokenizer_states.load_from_tokenizer(load_speech_tokenizer(tokenizer_dir)[0])
    config = model.config
    items = _mel_items(model, train_rows, train_audio, voice_names, "train mel")
    frames = torch.cat([it["mel"].float() for it in items]) if items else torch.zeros(0, config.n_mels)
    if not data.init_from and items:
        config.mel_mean, config.mel_std = round(float(frames.mean()), 4), round(float(frames.std()), 4)
    if not items:
        raise ValueError("no training utterance with speech tokens")
    logger.info(
        "%d training utterances, %.1f min, %d voices, target %s, %.2fM parameters",
        len(items), frames.shape[0] / config.frame_rate / 60, len(voices), target, model.num_parameters() / 1e6,
    )  # fmt: skip

    # 3. train (resuming from the last checkpoint of an interrupted run)
    push = take_push_settings(training_args)  # the final folder is uploaded at the end, card included
    reset_accelerator_precision()  # an earlier run in this process may have fixed another precision
    dataset = MelDataset(items, data.max_train_tokens, config.frames_per_token, config.block_size)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    done = json.loads((Path(last) / "trainer_state.json").read_text()) if last else None
    bridge_metrics: dict = {}
    if done and training_args.max_steps > 0 and done["global_step"] >= training_args.max_steps:
        logger.info("%s already holds the last step: evaluating it", last)  # crashed after training
        model = SpeechDecoderModel.from_pretrained(last)
        log_history, steps, seconds = done["log_history"], done["global_step"], 0.0
    else:
        if last:
            logger.info("resuming from %s", last)
        token_loss = None
        if training_args.token_loss_weight > 0:  # (the resumed-after-training branch above logs no token loss)
            token_loss, bridge_metrics = _token_loss(
                model, items, train_audio, tokenizer_dir, training_args, training_args.seed
            )
        trainer = DecoderTrainer(
            model=model, args=training_args, train_dataset=dataset, data_collator=collate,
            token_loss=token_loss, token_loss_weight=training_args.token_loss_weight,
        )  # fmt: skip
        result = trainer.train(resume_from_checkpoint=last)
        log_history, steps = trainer.state.log_history, trainer.state.global_step
        seconds = result.metrics.get("train_runtime", 0.0)

    # 4. save (safetensors + remote code), evaluate, then drop the checkpoints
    model.save_pretrained(output_dir)
    losses = [h["loss"] for h in log_history if "loss" in h]
    token_logs = [h for h in log_history if "token_loss" in h]
    metrics = {
        "objective": config.objective,
        "parameters": model.num_parameters(),
        "codebook_size": config.codebook_size,
        "train_utterances": len(items),
        "train_audio_minutes": round(frames.shape[0] / config.frame_rate / 60, 2),
        "voices": len(voice_names) or 1,
        "target_voice": target,
        "steps": steps,
        "final_train_loss": round(losses[-1], 4) if losses else None,
        "train_seconds": round(seconds, 1),
        "resumed_from": Path(last).name if last else None,
        "init_from": data.init_from,
        "token_loss_weight": training_args.token_loss_weight,
    }
    if token_logs:
        metrics.update(bridge_metrics)
        metrics["final_token_loss"] = token_logs[-1]["token_loss"]
        metrics["final_token_accuracy"] = token_logs[-1]["token_accuracy"]
    metrics.update(evaluate(model, splits, data, output_dir, training_args.seed))
    metrics["total_seconds"] = round(time.perf_counter() - start, 1)
    finish_run(output_dir, metrics, speech_decoder_card(metrics), trailing_newline=False)
    if push:
        metrics["hub_url"] = upload_folder_to_hub(output_dir, **push)
    logger.info("metrics: %s", json.dumps(metrics))
    return metrics


def _tokenizer_config_dict(tokenizer_config) -> dict:
    """What the decoder's copy of the post-quantizer layers is built from: the architecture, not the ASR
    vocabulary or the training-only fields' history (a plain dict inside the decoder's config.json)."""
    d = tokenizer_config.to_dict()
    for key in ("asr_vocab", "asr_special_ids", "asr_byte_level", "architectures", "auto_map",
                "transformers_version", "model_type", "dtype", "torch_dtype"):  # fmt: skip
        d.pop(key, None)
    for key in ("dropout", "attention_dropout", "activation_dropout"):  # a frozen copy: no training noise
        if key in d:
            d[key] = 0.0
    return d


def _pretrained_decoder(path: str, tokenizer_dir: Path, tokenizer_config, voice_names: list[str]) -> SpeechDecoderModel:
    """A trained decoder to fine-tune, checked against this run's tokenizer (its codebook too, where the decoder
    carries a copy of the tokenizer's layers) and voices."""
    model = SpeechDecoderModel.from_pretrained(path)
    model.check_speech_tokenizer(tokenizer_config)
    if model.encoder.tokenizer_states is not None:
        from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

        model.check_speech_tokenizer(load_speech_tokenizer(tokenizer_dir)[0])
    if bool(model.config.voice_names) != bool(voice_names):
        raise ValueError(f"{path}: voice_embedding must match the decoder being fine-tuned")
    if model.config.voice_names != voice_names:
        raise ValueError(
            f"{path} was trained with voices {model.config.voice_names}, this run has {voice_names}: "
            "the voice embeddings would mean other voices"
        )
    return model


def make_parser() -> HfArgumentParser:
    return HfArgumentParser((DataArguments, ModelArguments, DecoderTrainingArguments))


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the preset's `speech_decoder.yaml` as arguments, inputs from `run_dir`."""
    args = {**config, "output_dir": str(output_dir), "run_dir": str(run_dir)}
    if not torch.cuda.is_available():
        args.setdefault("use_cpu", True)
    return main(*make_parser().parse_dict(args))


def cli(argv: list[str] | None = None) -> dict:
    """`--config file.yaml` supplies defaults, every other flag overrides them (TRL's parser, as the other recipes).

    `TrlParser` rejects YAML keys that are no field of the three argument classes, so a typo fails loudly.
    """
    from trl import TrlParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv += ["--use_cpu", "true"]
    parser = TrlParser((DataArguments, ModelArguments, DecoderTrainingArguments))
    data, model_args, training_args = parser.parse_args_and_config(args=argv)
    return main(data, model_args, training_args)


if __name__ == "__main__":
    cli()

__all__ = ["DataArguments", "ModelArguments", "DecoderTrainingArguments", "MelDataset", "collate", "main", "run_stage"]

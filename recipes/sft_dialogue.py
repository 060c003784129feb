"""Spoken dialogue SFT with streaming thoughts (PAPER.md §7) on TRL's `SFTTrainer`: full fine-tuning or LoRA.

Usage:

    python -m recipes.sft_dialogue --config recipes/configs/demo/sft.yaml --run_dir runs/demo --output_dir runs/demo/sft
    python -m recipes.sft_dialogue ... --use_peft --lora_r 16     (LoRA; the speech-token embeddings stay trainable)

Inputs (from `run_dir` unless set): the pretrained speech-text LM (`pretrain/`), the dialogues (`dialogue/data`),
and for the evaluation the spoken QA items (`spoken_qa/`) and the speech tokenizer. The dialogues become TRL
conversational rows (`modeling_speechtext/data/dialogue.py`): the assistant turn in streaming thoughts, twice
(`copies`: a text-loss copy and a speech-loss copy, as in the paper), trained with `assistant_only_loss` through
the project's chat template (`{% generation %}` around the trained parts; role markers `<|system|>`, `<|user|>`,
`<|assistant|>` added as special tokens). The output is a plain causal LM folder (LoRA: merged, the adapter in
`adapter/`) with the chat template in its tokenizer and the layout in `config.speech_text`; `metrics.json` holds
the held-out loss and spoken QA through the chat (S->T, S->S, speech-vs-text WER).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trl import ModelConfig, SFTConfig

from modeling_speechtext.hardware import AutoPrecisionMixin, reset_accelerator_precision

logger = logging.getLogger("sft_dialogue")


@dataclass
class DialogueSFTArguments:
    run_dir: str | None = field(default=None, metadata={"help": "run folder with pretrain/, dialogue/, spoken_qa/"})
    model: str | None = field(
        default=None, metadata={"help": "speech-text LM (folder or Hub id); default <run>/pretrain"}
    )
    dialogue_data: str | None = field(default=None, metadata={"help": "Parquet folder; default <run>/dialogue/data"})
    text_chunk: int = 13
    speech_chunk: int = 26
    copies: dict = field(default_factory=lambda: {"text": 1, "speech": 1},
                         metadata={"help": "loss_on -> copies per epoch: text, speech, all"})  # fmt: skip
    system_prompt: str | None = None
    eval_spoken_qa: str | None = field(default=None, metadata={"help": "spoken QA folder; default <run>/spoken_qa"})
    eval_voice_sets: list[str] = field(default_factory=lambda: ["unseen_voices"])
    eval_max_items: int | None = None
    eval_max_new_tokens: int = 120
    eval_speech_temperature: float | None = field(default=1.0, metadata={
        "help": "also score the chat with sampled speech (greedy text) at this temperature; null: greedy only"})  # fmt: skip
    speech_tokenizer: str | None = None
    dropout: float | None = field(default=None, metadata={
        "help": "set every dropout probability the LM's config declares (the paper fine-tunes with 0.5); null: as saved"})  # fmt: skip
    keep_checkpoints: bool = False
    num_threads: int | None = None


def dropout_overrides(path: str, dropout: float | None) -> dict[str, float]:
    """Config overrides for `from_pretrained`: each numeric field named `*dropout` / `*pdrop` (Llama and Qwen2:
    `attention_dropout`; GPT-2: `resid_pdrop`, `embd_pdrop`, `attn_pdrop`), except a classifier or summary head's.
    An LM that declares none cannot take the setting: a clear error rather than a silently ignored one. The saved
    chat LM keeps the value in its config (inference ignores it; a further fine-tune inherits it unless set)."""
    from transformers import AutoConfig

    if dropout is None:
        return {}
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"sft: dropout must be in [0, 1), got {dropout}")
    config = AutoConfig.from_pretrained(path).to_dict()
    names = [k for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k.endswith(("dropout", "pdrop")) and not k.startswith(("classifier", "summary"))]  # fmt: skip
    if not names:
        raise ValueError(f"sft: dropout={dropout} asked for, but the LM's config ({path}) declares no dropout field")
    return {k: float(dropout) for k in names}


@dataclass
class DialogueSFTConfig(AutoPrecisionMixin, SFTConfig):
    """`SFTConfig` with `bf16: auto` and the assistant-only loss (the chat template's `{% generation %}` parts)."""

    assistant_only_loss: bool = True
    packing: bool = False


def prepare_model(path: str, args: DialogueSFTArguments):
    """The speech-text LM and tokenizer with the role markers, the chat template and the layout in its config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.data.dialogue import CHAT_TEMPLATE, ROLE_TOKENS, layout_from_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    layout = layout_from_tokenizer(tokenizer, args.text_chunk, args.speech_chunk)  # no speech tokens: a clear error
    model = AutoModelForCausalLM.from_pretrained(path, **dropout_overrides(path, args.dropout))
    new = [t for t in ROLE_TOKENS if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.speech_text = {"text_chunk": layout.text_chunk, "speech_chunk": layout.speech_chunk,
                                "codebook_size": layout.codebook_size, "role_tokens": list(ROLE_TOKENS)}  # fmt: skip
    return model, tokenizer, layout


def speech_lora_config(peft_config, model):
    """A LoRA config whose embeddings and LM head train in full (`modules_to_save`, unless given): the speech
    tokens' rows must keep learning (they are what the chat speaks), and a LoRA on attention alone would freeze
    them. With tied input/output embeddings one copy trains (`ensure_weight_tying`): two untied copies would be
    re-tied on reload and the trained head dropped."""
    if not peft_config.modules_to_save:
        peft_config.modules_to_save = ["embed_tokens", "lm_head"]
    if getattr(model.config, "tie_word_embeddings", False):
        peft_config.ensure_weight_tying = True
    return peft_config


def role_ids(tokenizer) -> list[int]:
    from modeling_speechtext.data.dialogue import ROLE_TOKENS

    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in ROLE_TOKENS if t in vocab]


def evaluate_chat(model, tokenizer, layout, args: DialogueSFTArguments, run: Path | None, batch_size: int,
                  reference=None) -> dict:  # fmt: skip
    """Spoken QA through the chat on each voice set of the spoken QA folder (float32 model); with `reference`
    (dialogues), also the judge's WER on their own assistant speech (`data_speech_vs_text_wer`, the floor)."""
    from modeling_speechtext.evaluation.dialogue_qa import data_speech_text_wer, dialogue_qa
    from modeling_speechtext.evaluation.lm_suite import asr_reader
    from modeling_speechtext.evaluation.spoken_qa_data import load_spoken_qa
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    folder = Path(args.eval_spoken_qa) if args.eval_spoken_qa else (run / "spoken_qa" if run else None)
    st = Path(args.speech_tokenizer) if args.speech_tokenizer else (run / "speech_tokenizer" if run else None)
    if folder is None or not folder.is_dir() or st is None or not st.exists():
        logger.warning("no spoken QA folder or speech tokenizer: chat evaluation skipped")
        return {}
    data = load_spoken_qa(folder)
    transcribe = asr_reader(load_speech_tokenizer(st)[0])
    out = {}
    unknown = sorted(set(args.eval_voice_sets) - set(data["items"]))
    if unknown:
        raise ValueError(f"eval_voice_sets {unknown} not in {folder} (it has {sorted(data['items'])})")
    for vset in args.eval_voice_sets:
        items = list(data["items"][vset])[: args.eval_max_items]
        # greedy (text and speech), and greedy text with sampled speech: greedy speech loops and rarely ends
        decodings = {"": None} | ({"_sampled": {"temperature": args.eval_speech_temperature, "seed": 0}}
                                  if args.eval_speech_temperature else {})  # fmt: skip
        out[vset] = {
            kind + suffix: dialogue_qa(model, tokenizer, layout, items, transcribe, kind == "spoken",
                                       args.eval_max_new_tokens, batch_size, role_ids(tokenizer),
                                       system=args.system_prompt, speech_sampling=sampling)
            for suffix, sampling in decodings.items() for kind in ("spoken", "text")
        }  # fmt: skip
    if reference is not None:
        out["data_speech_vs_text_wer"] = data_speech_text_wer(reference, transcribe)
    return out


def train(args: DialogueSFTArguments, training_args: DialogueSFTConfig, model_args: ModelConfig) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import get_peft_config

    from modeling_speechtext.data.dialogue import to_conversational
    from recipes.common import finish_run
    from recipes.lm_trainer import CausalLMSFTTrainer

    start = time.perf_counter()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(training_args.seed)
    run = Path(args.run_dir) if args.run_dir else None
    path = args.model or (str(run / "pretrain") if run else None)
    if path is None:
        raise ValueError("no speech-text LM: set --model or --run_dir")
    model, tokenizer, layout = prepare_model(path, args)
    data_dir = Path(args.dialogue_data) if args.dialogue_data else (run / "dialogue" / "data" if run else None)
    if data_dir is None or not any(data_dir.glob("train-*.parquet")):
        raise FileNotFoundError(f"no dialogue data: {data_dir}/train-*.parquet (run the dialogue stage)")
    files = {
        s: str(data_dir / f"{s}-*.parquet") for s in ("train", "validation") if any(data_dir.glob(f"{s}-*.parquet"))
    }
    raw = load_dataset("parquet", data_files=files)
    train_rows = to_conversational(raw["train"], tokenizer, layout, args.copies, args.system_prompt).shuffle(
        seed=training_args.seed
    )
    eval_rows = (to_conversational(raw["validation"], tokenizer, layout, {"all": 1}, args.system_prompt)
                 if "validation" in raw else None)  # fmt: skip
    if eval_rows is None:
        training_args.eval_strategy = "no"
    peft_config = get_peft_config(model_args)
    if peft_config is not None:
        peft_config = speech_lora_config(peft_config, model)
    output_dir = Path(training_args.output_dir)
    reset_accelerator_precision()
    trainer = CausalLMSFTTrainer(model=model, args=training_args, train_dataset=train_rows, eval_dataset=eval_rows,
                                 processing_class=tokenizer, peft_config=peft_config)  # fmt: skip
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    if peft_config is not None:
        trainer.model.save_pretrained(str(output_dir / "adapter"))
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(output_dir))
    else:
        trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    saved = AutoModelForCausalLM.from_pretrained(str(output_dir), dtype=torch.float32).eval()
    eval_loss = None
    if eval_rows is not None:
        reset_accelerator_precision()
        evaluator = CausalLMSFTTrainer(model=saved, args=replace(training_args, bf16=False, fp16=False),
                                       train_dataset=train_rows.select(range(1)), eval_dataset=eval_rows,
                                       processing_class=tokenizer)  # fmt: skip
        eval_loss = round(evaluator.evaluate()["eval_loss"], 4)
    chat = evaluate_chat(saved, tokenizer, layout, args, run, training_args.per_device_eval_batch_size,
                         raw["validation"] if "validation" in raw else None)  # fmt: skip
    floor = chat.pop("data_speech_vs_text_wer", None)
    metrics = {
        "model": path, "peft": peft_config is not None, "steps": trainer.state.global_step,
        "train_loss": round(result.training_loss, 4), "eval_loss": eval_loss, "train_rows": len(train_rows),
        "copies": args.copies, "layout": {"text_chunk": layout.text_chunk, "speech_chunk": layout.speech_chunk},
        "chat_qa": chat, "data_speech_vs_text_wer": floor, "eval_speech_temperature": args.eval_speech_temperature, "bf16": bool(training_args.bf16), "resumed_from": Path(last).name if last else None,
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    finish_run(output_dir, metrics, sft_card(metrics), keep_checkpoints=args.keep_checkpoints)
    logger.info("metrics: %s", json.dumps(metrics)[:2000])
    return metrics


def sft_card(metrics: dict[str, Any]) -> str:
    rows = []
    for vset, r in (metrics.get("chat_qa") or {}).items():
        for src, res in r.items():
            for task, v in res["per_task"].items():
                to_text, to_speech = (v[k] for k in v if k != "n")
                wer = res["speech_vs_text_wer"]
                rows.append(f"| {vset} | {src} | {task} | {to_text:.0%} | {to_speech:.0%} | "
                            f"{'-' if wer is None else f'{wer:.0%}'} |")  # fmt: skip
    table = "\n".join(rows) or "| - | - | - | - | - | - |"
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [speechtext, speech-text-lm, spoken-dialogue, streaming-thoughts]
---
# speechtext spoken chat LM (dialogue SFT)

The pretrained speech-text LM fine-tuned on spoken dialogues: the user speaks (speech tokens) or types, the
assistant answers in streaming thoughts ({metrics["layout"]["text_chunk"]} text tokens, then
{metrics["layout"]["speech_chunk"]} speech tokens, alternating). {metrics["steps"]} steps{", LoRA merged" if metrics["peft"] else ""}.
A stock causal LM (no remote code); the chat template is in the tokenizer, the layout in `config.speech_text`.

Questions are `spoken` or typed (`text`); `_sampled`: greedy text with sampled speech (temperature
{metrics.get("eval_speech_temperature")}), otherwise greedy throughout. The same ASR judge on the dialogue data's own
answer speech gives {metrics.get("data_speech_vs_text_wer")} WER: the floor of the last column for this judge.

| voice set | question | task | text answer right | speech answer right (ASR) | speech-vs-text WER |
|---|---|---|---|---|---|
{table}
"""


def _parser():
    from trl import TrlParser

    return TrlParser((DialogueSFTArguments, DialogueSFTConfig, ModelConfig))


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the preset's `sft.yaml` holds `DialogueSFTArguments`, `SFTConfig` and `ModelConfig` fields."""
    from recipes.common import run_trl_stage

    metrics = run_trl_stage(_parser(), train, config, output_dir, run_dir)
    return {k: metrics[k] for k in ("steps", "train_loss", "eval_loss", "seconds")} | {"chat_qa": {
        v: {src: r["per_task"] for src, r in res.items()} for v, res in metrics["chat_qa"].items()}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    from recipes.common import run_trl_main

    return run_trl_main(_parser(), train, argv)


if __name__ == "__main__":
    main()

__all__ = ["DialogueSFTArguments", "DialogueSFTConfig", "prepare_model", "run_stage", "speech_lora_config", "train"]

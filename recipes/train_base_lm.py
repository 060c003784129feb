"""The base LM stage: the text-only causal LM that the speech-text LM is grown from.

The paper starts from GLM-4-9B-Base. Give any causal LM by Hub id or folder (`model_name_or_path`) and the
stage records it for the pretraining stage without copying or training it (`base_lm.json`), unless
`continue_training` is set. Without one (the embedded default: no Hub weights here) it pretrains a small
Llama/Qwen2-style LM from scratch on the text corpus' *train* documents with the project's text tokenizer.
Either way the result is a stock architecture: `AutoModelForCausalLM.from_pretrained` loads it, no remote code.

Usage:

    python -m recipes.train_base_lm --config recipes/configs/demo/base_lm.yaml \\
        --run_dir runs/demo --output_dir runs/demo/base_lm
    python -m recipes.train_base_lm --run_dir runs/paper --output_dir runs/paper/base_lm \\
        --model_name_or_path THUDM/glm-4-9b            # use a Hub model as it is

Training is TRL's `SFTTrainer` on a language-modeling dataset (`text` column) with packing: each document ends
with eos and the stream is cut into `max_length` blocks (`packing_strategy: wrapped`, see `BaseLMSFTConfig`).
`packing: false` trains one document per row instead, padded per batch, since a block boundary inside a bAbI story
leaves the answers after it without the sentences they need. `qa_fraction` mixes in (1.0: trains only on) the
corpus's bAbI train questions as rows with the loss on the answer: the demo's choice (docs/SPEECH_TEXT_LM.md).
Outputs: model + tokenizer + generation config, `metrics.json` (validation loss and perplexity in float32,
T->T bAbI accuracy on validation stories for the tiny world), `loss_curve.png`, `README.md`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trl import SFTConfig

from modeling_speechtext.hardware import AutoPrecisionMixin, reset_accelerator_precision
from recipes.common import finish_run, plot_loss_curve

logger = logging.getLogger("train_base_lm")

REFERENCE_FILE = "base_lm.json"


@dataclass
class BaseLMArguments:
    """Data and model size (`BaseLMSFTConfig` holds the optimisation fields)."""

    run_dir: str | None = field(default=None, metadata={"help": "run folder with text_corpus/, text_tokenizer/"})
    documents: str | None = field(default=None, metadata={"help": "default: <run_dir>/text_corpus/documents"})
    text_tokenizer: str | None = field(default=None, metadata={"help": "default: <run_dir>/text_tokenizer"})
    qa: str | None = field(default=None, metadata={"help": "default: <run_dir>/text_corpus/qa (tiny world only)"})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "a causal LM (Hub id or folder) to use instead of training one; its tokenizer comes along"},
    )
    continue_training: bool = field(
        default=False, metadata={"help": "with model_name_or_path: train it further on the documents"}
    )
    text_column: str = "text"
    train_split: str = "train"
    eval_split: str = "validation"
    max_train_documents: int | None = None
    max_eval_documents: int | None = 500
    sources: list[str] | None = field(
        default=None,
        metadata={
            "help": "keep only documents whose `source` column is one of these (e.g. babi/qa1): a small "
            "budget spent on the tasks that are evaluated"
        },
    )
    qa_eval_samples: int = field(default=300, metadata={"help": "validation bAbI questions for T->T (0: skip)"})
    qa_fraction: float = field(
        default=0.0,
        metadata={
            "help": "tiny world: this fraction of the training rows are train questions of text_corpus/qa "
            "(story + question -> answer, loss on the answer only; the tasks of `sources`), mixed with the "
            "documents by datasets.interleave_datasets; 1.0: question rows only (the documents then come with "
            "the pretraining stage's text part). Needs packing: false"
        },
    )
    # a fresh LM of a stock architecture
    model_type: str = field(default="llama", metadata={"help": "any AutoConfig causal LM type: llama, qwen2, ..."})
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    intermediate_size: int = 768
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True
    keep_checkpoints: bool = False
    num_threads: int | None = None


@dataclass
class BaseLMSFTConfig(AutoPrecisionMixin, SFTConfig):
    """`SFTConfig` with `bf16: auto`, packing on (whole documents packed best-fit into `max_length`) and the
    tokens seen counted (the token budget of an ablation arm)."""

    packing: bool = True
    # "wrapped": documents, each ended by eos, concatenated and cut into `max_length` blocks (GPT-style; attention
    # crosses a document boundary inside a block). Not TRL's "bfd": its padding-free batches need FlashAttention's
    # variable-length kernels to be fast; with SDPA (CPU) the whole flattened batch gets one dense mask. Measured,
    # demo preset, 16 x 512 tokens, 2 cores, bf16: 7.6 s/step bfd vs 2.0 s/step wrapped. On GPUs with
    # flash-attn, `packing_strategy: bfd` keeps documents apart (tested in tests/test_base_lm.py).
    packing_strategy: str = "wrapped"
    include_num_input_tokens_seen: str = field(default="non_padding", metadata={"help": "all, non_padding or no"})


def read_reference(folder: str | Path) -> str:
    """What a finished base_lm folder stands for: itself, or the model it names in `base_lm.json`."""
    folder = Path(folder)
    ref = folder / REFERENCE_FILE
    if ref.is_file():
        return json.loads(ref.read_text())["model_name_or_path"]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: neither a model folder (config.json) nor a {REFERENCE_FILE}")
    return str(folder)


def _paths(args: BaseLMArguments) -> dict[str, Path | None]:
    run = Path(args.run_dir) if args.run_dir else None
    pick = lambda value, default: Path(value) if value else (run / default if run else None)  # noqa: E731
    return {
        "documents": pick(args.documents, "text_corpus/documents"),
        "text_tokenizer": pick(args.text_tokenizer, "text_tokenizer"),
        "qa": pick(args.qa, "text_corpus/qa"),
    }


def fresh_model(args: BaseLMArguments, tokenizer):
    """A randomly initialised causal LM of `model_type`, sized by the arguments, for this tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if tokenizer.eos_token_id is None:
        raise ValueError("the text tokenizer has no eos token: documents could not be ended")
    config = AutoConfig.for_model(
        args.model_type,
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads or args.num_attention_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings,
        tie_word_embeddings=args.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    return AutoModelForCausalLM.from_config(config)


def _load_documents(path: Path, args: BaseLMArguments):
    from datasets import load_from_disk

    if path is None or not path.exists():
        raise FileNotFoundError(f"documents: {path} not found (run the text_corpus stage, or set --documents)")
    data = load_from_disk(str(path))
    out = {}
    for split, limit in ((args.train_split, args.max_train_documents), (args.eval_split, args.max_eval_documents)):
        if split not in data:
            raise ValueError(f"{path}: no split {split!r}; splits are {list(data)}")
        rows = data[split]
        if args.text_column not in rows.column_names:
            raise ValueError(f"{path}[{split}] has no column {args.text_column!r}: {rows.column_names}")
        rows = rows.filter(lambda t: bool(t and t.strip()), input_columns=args.text_column)
        if args.sources:
            if "source" not in rows.column_names:
                raise ValueError(f"{path}[{split}]: `sources` given but the documents have no `source` column")
            wanted = set(args.sources)
            rows = rows.filter(lambda s, wanted=wanted: s in wanted, input_columns="source")
            if len(rows) == 0:
                raise ValueError(f"{path}[{split}]: no document of sources {sorted(wanted)}")
        if limit:
            rows = rows.select(range(min(limit, len(rows))))
        if len(rows) == 0:
            raise ValueError(f"{path}[{split}]: no non-empty document")
        rows = rows.select_columns([args.text_column])
        out[split] = rows if args.text_column == "text" else rows.rename_column(args.text_column, "text")
    return out[args.train_split], out[args.eval_split]


def _tasks_of(sources: list[str] | None) -> list[int] | None:
    """bAbI task numbers named by `sources` (`babi/qa1` -> 1); None when they name none (evaluate every task)."""
    import re

    tasks = [int(m.group(1)) for s in sources or [] if (m := re.fullmatch(r"babi/qa(\d+)", s))]
    return tasks or None


def qa_metrics(
    model, tokenizer, qa_path: Path | None, samples: int, seed: int, tasks: list[int] | None = None
) -> dict[str, Any]:
    """T->T bAbI accuracy (ranked, generated, chance) on validation questions: does the LM know the world?"""
    from datasets import load_from_disk

    from modeling_speechtext.evaluation.babi_qa import text_qa_accuracy

    if not samples or qa_path is None or not qa_path.exists():
        return {}
    qa = load_from_disk(str(qa_path))
    answer_sets: dict[int, list[str]] = {}
    for task, answer in zip(qa["train"]["task"], qa["train"]["answer"]):
        answer_sets.setdefault(task, [])
        if answer not in answer_sets[task]:
            answer_sets[task].append(answer)
    validation = qa["validation"]
    if tasks:  # the tasks the LM was trained on
        validation = validation.filter(lambda t: t in set(tasks), input_columns="task")
    rows = validation.shuffle(seed=seed).select(range(min(samples, len(validation))))
    per_task = text_qa_accuracy(model, tokenizer, list(rows), answer_sets)
    n = sum(v["n"] for v in per_task.values())
    mean = lambda key: sum(v[key] * v["n"] for v in per_task.values()) / n  # noqa: E731
    return {
        "qa_tt_ranked": round(mean("ranked"), 4),
        "qa_tt_generated": round(mean("generated"), 4),
        "qa_tt_chance": round(mean("chance"), 4),
        "qa_questions": n,
        "qa_tt_by_task": {
            t: {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()} for t, d in per_task.items()
        },
    }


def base_lm_card(metrics: dict[str, Any]) -> str:
    """Model card: what it is, how it was trained, its numbers, and how to load it."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items() if not isinstance(v, dict))
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [speechtext, causal-lm]
---
# speechtext base LM

The text-only causal LM ({metrics.get("model_type")}, {metrics.get("params", 0) / 1e6:.2f}M parameters) that the
speech-text LM is grown from (GLM-4-Voice recipe, arXiv:2411.17607). Trained from scratch on {_training_data(metrics)}
with the project's byte-level BPE tokenizer; a stock architecture, no remote code.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("PATH")
tokenizer = AutoTokenizer.from_pretrained("PATH")
```

| metric | value |
|---|---|
{rows}
"""


def _training_data(metrics: dict[str, Any]) -> str:
    fraction = metrics.get("qa_fraction") or 0.0
    if fraction >= 1.0:
        return "the text corpus' bAbI train questions (story + question, loss on the answer; no plain documents)"
    if fraction > 0:
        return f"the text corpus' train documents and, as {fraction:.0%} of the rows, its bAbI train questions"
    return "the text corpus' train documents"


def question_row(tokenizer, row: dict) -> dict[str, list[int]]:
    """One qa row (story, question, answer) as `input_ids` + `completion_mask`: the prompt in the document format,
    then the answer and eos, the only tokens with loss."""
    from modeling_speechtext.evaluation.babi_qa import answer_text, qa_prompt

    prompt = tokenizer(qa_prompt(row["story"], row["question"]))["input_ids"]
    answer = tokenizer(answer_text(row["answer"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}


def with_qa_rows(train_docs, qa_path: Path | None, tokenizer, args: BaseLMArguments, seed: int):
    """Documents + QA rows as one pre-tokenized dataset (`input_ids`, `completion_mask`: all of a document, only a
    question's answer), mixed `1 - qa_fraction` : `qa_fraction` by `datasets.interleave_datasets`; with
    `qa_fraction: 1.0` the question rows alone.

    Why: with the loss on whole documents the answers are ~5% of the tokens, and the demo LM learnt to answer only at
    the edge of its budget (seed-dependent). Measured at the demo size (docs/SPEECH_TEXT_LM.md): question rows
    alone at LR 1e-3 answer task 1 at 46-52% after 150 steps (two seeds, two tokenizers), while documents alone or
    mixed 50% / 80% with question rows were still at chance after 450-600 steps: the loss is a mean over tokens, so
    a document's ~110 tokens outweigh a question's ~3 answer tokens even when most rows are questions. The question
    rows are the corpus's own train questions in the document format (`babi_qa.qa_prompt` / `answer_text`), so
    nothing of validation or test enters.
    """
    from datasets import interleave_datasets, load_from_disk

    if not 0.0 < args.qa_fraction <= 1.0:
        raise ValueError(f"qa_fraction must be in (0, 1] (1: question rows only), got {args.qa_fraction}")
    if qa_path is None or not qa_path.exists():
        raise FileNotFoundError(f"qa_fraction > 0 needs the corpus's qa rows: {qa_path} not found (tiny world only)")
    qa = load_from_disk(str(qa_path))["train"]
    tasks = _tasks_of(args.sources)
    if tasks:
        wanted = set(tasks)
        qa = qa.filter(lambda t: t in wanted, input_columns="task")
    if len(qa) == 0:
        raise ValueError(f"{qa_path}: no train question of tasks {tasks}")

    def document(row):
        ids = tokenizer(row["text"])["input_ids"] + [tokenizer.eos_token_id]
        return {"input_ids": ids, "completion_mask": [1] * len(ids)}

    questions = qa.map(lambda row: question_row(tokenizer, row), remove_columns=qa.column_names)
    if args.qa_fraction == 1.0:
        return questions
    docs = train_docs.map(document, remove_columns=train_docs.column_names)
    return interleave_datasets(
        [docs, questions], probabilities=[1 - args.qa_fraction, args.qa_fraction], seed=seed,
        stopping_strategy="all_exhausted",
    )  # fmt: skip


def train(args: BaseLMArguments, training_args: BaseLMSFTConfig) -> dict[str, Any]:
    """Reference a given LM, or load documents (and question rows) -> SFTTrainer -> save -> float32 eval -> metrics."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from recipes.lm_trainer import CausalLMSFTTrainer

    start = time.perf_counter()
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.model_name_or_path and not args.continue_training:
        (output_dir / REFERENCE_FILE).write_text(json.dumps({"model_name_or_path": args.model_name_or_path}) + "\n")
        metrics = {"model_name_or_path": args.model_name_or_path, "trained": False}
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(training_args.seed)
    paths = _paths(args)
    train_docs, eval_docs = _load_documents(paths["documents"], args)
    source = args.model_name_or_path or paths["text_tokenizer"]
    if source is None or (not args.model_name_or_path and not Path(source).exists()):
        raise FileNotFoundError(f"text tokenizer: {source} not found (run the text_tokenizer stage)")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = (
        AutoModelForCausalLM.from_pretrained(args.model_name_or_path)
        if args.model_name_or_path
        else fresh_model(args, tokenizer)
    )
    positions = getattr(model.config, "max_position_embeddings", None) or args.max_position_embeddings
    if training_args.max_length is None or training_args.max_length > positions:
        logger.warning("max_length=%s: using the model's %d positions", training_args.max_length, positions)
        training_args.max_length = positions
    train_rows = train_docs
    if args.qa_fraction:
        if training_args.packing:
            # a packed block would cut a question from its story, the failure these rows are meant to avoid
            raise ValueError("qa_fraction > 0 needs packing: false (one document or question per row)")
        if training_args.completion_only_loss is False:
            raise ValueError("qa_fraction > 0 needs completion_only_loss (the loss of a question row is its answer)")
        training_args.completion_only_loss = True  # the rows' completion_mask: whole documents, answers only
        train_rows = with_qa_rows(train_docs, paths["qa"], tokenizer, args, training_args.seed)
    reset_accelerator_precision()
    trainer = CausalLMSFTTrainer(
        model=model, args=training_args, train_dataset=train_rows, eval_dataset=eval_docs, processing_class=tokenizer
    )
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last:
        logger.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(output_dir))  # on every rank (FSDP/ZeRO-3 gather the weights); the main one writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir))
    trainer.accelerator.wait_for_everyone()  # the folder is whole before any rank loads it
    train_tokens = int(trainer.state.num_input_tokens_seen) if trainer.state.num_input_tokens_seen else None
    # Evaluate what a user loads: the saved folder in float32 (Accelerate's autocast wrapper outlives training).
    saved = AutoModelForCausalLM.from_pretrained(str(output_dir), dtype=torch.float32).eval()
    reset_accelerator_precision()
    eval_trainer = CausalLMSFTTrainer(  # TRL wants a train set; the eval set stands in (nothing is trained)
        model=saved,
        args=replace(training_args, bf16=False, fp16=False),
        train_dataset=eval_docs,
        eval_dataset=eval_docs,
        processing_class=tokenizer,
    )
    eval_loss = float(eval_trainer.evaluate()["eval_loss"])  # collective: every rank takes part (as in pretrain)
    if not trainer.is_world_process_zero():
        return {}
    metrics: dict[str, Any] = {
        "model_type": model.config.model_type,
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(eval_loss, 4),
        "eval_perplexity": round(math.exp(eval_loss), 3),
        "steps": trainer.state.global_step,
        "train_documents": 0 if args.qa_fraction >= 1.0 else len(train_docs),
        "train_tokens_seen": train_tokens,
        "resumed_from": Path(last).name if last else None,
        "init_from": args.model_name_or_path,
        "bf16": bool(training_args.bf16),
        "num_processes": trainer.accelerator.num_processes,
        "sources": args.sources,
        "qa_fraction": args.qa_fraction,
        "train_rows": len(train_rows),
    }
    tasks = _tasks_of(args.sources)
    metrics.update(qa_metrics(saved, tokenizer, paths["qa"], args.qa_eval_samples, training_args.seed, tasks))
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png", "cross-entropy per token", "validation")
    finish_run(output_dir, metrics, base_lm_card(metrics), keep_checkpoints=args.keep_checkpoints)
    logger.info("metrics: %s", json.dumps(metrics))
    return metrics


def _parser():
    from trl import TrlParser

    return TrlParser((BaseLMArguments, BaseLMSFTConfig))


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline stage: the preset's `base_lm.yaml` holds fields of `BaseLMArguments` and `SFTConfig`."""
    from recipes.common import run_trl_stage

    return run_trl_stage(_parser(), train, config, output_dir, run_dir)


def main(argv: list[str] | None = None) -> dict:
    from recipes.common import run_trl_main

    return run_trl_main(_parser(), train, argv)


if __name__ == "__main__":
    main()

__all__ = ["BaseLMArguments", "BaseLMSFTConfig", "fresh_model", "read_reference", "run_stage", "train"]

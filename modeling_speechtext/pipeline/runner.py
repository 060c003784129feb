"""The spine: run every stage in order, each into its own folder, skipping stages already complete.

A stage is a function `run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict` (key numbers,
JSON-serialisable). It finds its inputs in sibling folders of `run_dir` and may resume partial work inside
`output_dir`. Completion is recorded in `output_dir/stage.json` *after* the stage returns, so a crash
mid-stage leaves no marker and the next run resumes it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeling_speechtext.hardware import run_environment, take_decisions
from modeling_speechtext.pipeline.presets import load_preset

logger = logging.getLogger(__name__)

STAGE_MARKER = "stage.json"


@dataclass(frozen=True)
class StageSpec:
    name: str
    target: str  # "module:function"
    description: str

    def load(self):
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


# Order matters: a stage reads the folders of the stages before it.
STAGES: list[StageSpec] = [
    StageSpec(
        "text_corpus", "dataset_builders.text_corpus:run_stage", "documents + sentences (tiny world or open text)"
    ),
    StageSpec("speech_corpus", "dataset_builders.speech_corpus:run_stage", "offline multi-voice TTS speech"),
    StageSpec("text_tokenizer", "dataset_builders.text_tokenizer:run_stage", "byte-level BPE for the text side"),
    StageSpec("speech_tokenizer", "recipes.train_speech_tokenizer:run_stage", "ASR-supervised VQ tokenizer, 12.5 Hz"),
    StageSpec("speech_tokens", "dataset_builders.speech_tokens:run_stage", "the speech corpus encoded to tokens"),
    StageSpec("speech_decoder", "recipes.train_speech_decoder:run_stage", "tokens -> mel (flow matching) -> wave"),
    StageSpec("text_to_token", "recipes.train_text_to_token:run_stage", "causal LM: text -> speech tokens"),
    StageSpec("interleaved", "dataset_builders.interleaved:run_stage", "text spans replaced by speech tokens"),
    StageSpec("spoken_qa", "dataset_builders.spoken_qa:run_stage", "bAbI test questions spoken, seen + unseen voices"),
    StageSpec("base_lm", "recipes.train_base_lm:run_stage", "the text LM the speech-text LM grows from"),
    StageSpec("pretrain", "recipes.pretrain:run_stage", "speech-text LM pretrained on the data mixture"),
    StageSpec("eval", "modeling_speechtext.evaluation.lm_suite:run_stage", "spoken QA, cloze, the LM's ASR/TTS"),
    StageSpec("dialogue", "dataset_builders.dialogue:run_stage", "spoken bAbI dialogues: user speech, assistant text+speech"),
    StageSpec("sft", "recipes.sft_dialogue:run_stage", "dialogue SFT in streaming thoughts, spoken QA through the chat"),
]

STAGE_NAMES = [s.name for s in STAGES]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def read_stage_marker(stage_dir: Path) -> dict | None:
    marker = stage_dir / STAGE_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def run_pipeline(
    preset: str | Path,
    output_dir: str | Path,
    stages: list[str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    force: list[str] | None = None,
) -> dict[str, Any]:
    """Run `stages` (default: the preset's list) of `preset` into `output_dir`; returns the pipeline report.

    `force` reruns the named stages and every stage after them, since later stages consume earlier outputs.
    A stage already complete with a *different* config is an error rather than a silent reuse.
    """
    cfg = load_preset(preset, overrides)
    wanted = stages or cfg["pipeline"].get("stages") or STAGE_NAMES
    unknown = [s for s in wanted + list(force or []) if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {STAGE_NAMES}")
    first_forced = min((STAGE_NAMES.index(s) for s in force or []), default=len(STAGE_NAMES))

    run_dir = Path(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / "pipeline.json"
    # where the seconds below were measured: two runs' timings compare only on like hardware, threads, precision
    report = {"preset": str(preset), "output_dir": str(run_dir.resolve()), **run_environment(), "stages": []}
    for index, spec in enumerate(STAGES):
        if spec.name not in wanted:
            continue
        if spec.name not in cfg:
            raise ValueError(f"preset {preset!r} has no {spec.name}.yaml")
        stage_cfg = cfg[spec.name]
        stage_dir = run_dir / spec.name
        marker = read_stage_marker(stage_dir)
        entry: dict[str, Any] = {"stage": spec.name, "description": spec.description}
        if marker is not None and index < first_forced:
            if marker.get("config") != json.loads(json.dumps(stage_cfg, default=str)):
                raise RuntimeError(
                    f"{stage_dir} was built with a different config; pass --force {spec.name} or a new --output_dir"
                )
            entry.update(status="skipped", seconds=marker["seconds"], metrics=marker["metrics"])
            entry["environment"] = marker.get("environment")  # where those seconds were measured
            logger.info("stage %s: complete, skipped", spec.name)
        else:
            if marker is not None:
                (stage_dir / STAGE_MARKER).unlink()
            stage_dir.mkdir(parents=True, exist_ok=True)
            logger.info("stage %s: running -> %s", spec.name, stage_dir)
            take_decisions()  # forget decisions of earlier stages
            start = time.perf_counter()
            try:
                metrics = spec.load()(stage_cfg, stage_dir, run_dir) or {}
            except BaseException as err:
                entry.update(status="failed", error=f"{type(err).__name__}: {err}")
                report["stages"].append(entry)
                _write_json(report_path, report)
                raise
            seconds = round(time.perf_counter() - start, 2)
            environment = run_environment(take_decisions())
            _write_json(
                stage_dir / STAGE_MARKER,
                {"config": stage_cfg, "metrics": metrics, "seconds": seconds, "environment": environment},
            )
            entry.update(status="done", seconds=seconds, metrics=metrics, environment=environment)
        report["stages"].append(entry)
        _write_json(report_path, report)
    return report


__all__ = ["StageSpec", "STAGES", "STAGE_NAMES", "STAGE_MARKER", "read_stage_marker", "run_pipeline"]

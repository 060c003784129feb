"""The paper's ablation: the same base LM and token budget, pretrained with and without the interleaved part.

Given a run folder whose stages up to `base_lm` and `spoken_qa` are built (`speechtext pipeline --preset P`), each
arm x seed runs the preset's `pretrain` recipe (same steps, batch and block length, so the same number of training
tokens; only the mixture differs) and then the preset's `eval` suite on its model, each into its own folder under
`--output`. The table (`ablation.md`, `ablation.json`) has every headline metric per arm and seed with the
training tokens. Arms are done in turn and skipped when their `eval/metrics.json` exists, so an interrupted
ablation continues where it stopped (the recipe itself resumes from its last checkpoint).

    .venv/bin/python bench/ablation_interleaved.py --run_dir runs/demo --preset demo --seeds 1234 7
    .venv/bin/python bench/ablation_interleaved.py --run_dir runs/tiny --preset tiny --seeds 1 2 \\
        --arm eta03=runs/tiny_eta03/interleaved/dataset       # another interleaved build, e.g. another eta

Arms: `interleaved` (the preset's mixture), `no_interleaved` (its interleaved share set to 0: the mixture
renormalises the other parts' shares), and any `--arm NAME=PATH` (the preset's mixture with the interleaved
part read from PATH).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
from pathlib import Path

from modeling_speechtext.evaluation.lm_suite import EvalConfig, evaluate_lm
from modeling_speechtext.pipeline.presets import load_preset
from recipes.pretrain import run_stage as pretrain_stage

MODALITIES = ("T->T", "S->T", "S->S", "T->S")


def arm_config(pretrain: dict, arm: str, interleaved_path: str | None, seed: int) -> dict:
    """The preset's pretrain config for one arm and seed (the budget untouched)."""
    cfg = copy.deepcopy(pretrain)
    cfg["seed"] = seed
    parts = cfg["mixture"]["parts"]
    if "interleaved" not in parts:
        raise ValueError("the preset's mixture has no `interleaved` part to ablate")
    if arm == "no_interleaved":
        parts["interleaved"]["share"] = 0.0
    elif interleaved_path:
        parts["interleaved"]["source"] = interleaved_path
    return cfg


def row(arm: str, seed: int, pre: dict, ev: dict) -> dict:
    """One table row: tokens, per-task QA (ranked) in every modality and voice set, ASR/TTS WER, cloze."""
    out = {"arm": arm, "seed": seed, "train_tokens": pre.get("train_tokens_seen"), "steps": pre.get("steps"),
           "pretrain_seconds": pre.get("seconds")}  # fmt: skip
    for vset, per in ev["spoken_qa"].items():
        for modality in MODALITIES:
            for task, r in per.get(modality, {}).items():
                out[f"{modality} task {task} {vset}"] = r["ranked"]
                out[f"{modality} task {task} {vset} generated"] = r["generated"]
    for vset, per in ev.get("cloze", {}).items():
        for key, value in per.items():
            if isinstance(value, float):
                out[f"cloze {key} {vset}"] = value
    for split, r in ev.get("lm_asr_tts", {}).items():
        out[f"LM ASR WER {split}"], out[f"LM TTS WER {split}"] = r.get("asr_wer"), r.get("tts_wer")
    return out


def table(rows: list[dict]) -> str:
    """Markdown: one column per arm x seed, one line per metric (ranked accuracies and WERs in %)."""
    keys = [k for k in rows[0] if k not in ("arm", "seed") and not k.endswith("generated")]
    head = "| metric | " + " | ".join(f"{r['arm']} s{r['seed']}" for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    for k in keys:
        cells = []
        for r in rows:
            v = r.get(k)
            pct = isinstance(v, float) and k not in ("pretrain_seconds",)
            cells.append("-" if v is None else f"{100 * v:.1f}" if pct else str(v))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", required=True, type=Path)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234])
    ap.add_argument("--arms", nargs="+", default=["interleaved", "no_interleaved"])
    ap.add_argument("--arm", action="append", default=[], help="NAME=PATH: interleaved part read from PATH")
    ap.add_argument("--max_steps", type=int, help="every arm's steps (default: the preset's): a larger equal budget")
    ap.add_argument("--output", type=Path, help="default: RUN_DIR/ablation")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    preset = load_preset(a.preset)
    extra = dict(item.split("=", 1) for item in a.arm)
    output = a.output or a.run_dir / "ablation"
    rows = []
    for seed in a.seeds:
        for arm in [*a.arms, *extra]:
            # the step count is in the name, so that arms of different budgets never mix in one table or resume
            folder = output / f"{arm}-s{seed}-{a.max_steps or preset['pretrain']['max_steps']}steps"
            done = folder / "eval" / "metrics.json"
            if not done.exists():
                cfg = arm_config(preset["pretrain"], arm, extra.get(arm), seed)
                if a.max_steps:
                    cfg["max_steps"] = a.max_steps
                pretrain_stage(cfg, folder / "pretrain", a.run_dir)
                evaluate_lm(EvalConfig.from_dict({**preset["eval"], "lm": str(folder / "pretrain")}), a.run_dir,
                            folder / "eval")  # fmt: skip
            pre = json.loads((folder / "pretrain" / "metrics.json").read_text())
            rows.append(row(arm, seed, pre, json.loads(done.read_text())))
            (output / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
            (output / "ablation.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`speechtext eval`: the speech-text LM's evaluation suite on a run, or a spoken QA manifest you bring.

    speechtext eval --run runs/demo                       # the suite -> runs/demo/eval_cli/{metrics.json,report.md}
    speechtext eval --run runs/demo --spoken_qa my_qa/manifest.jsonl --output my_qa.json

A manifest has one JSON object per line: `id`, `task`, `context_audio` (a list of audio paths relative to the
manifest, one per story sentence), `question_audio`, `answer`, and optionally `context` (list of sentences) and
`question` as text (then T->T is scored too). The run's speech tokenizer encodes the audio and its pretrained
LM answers (override with --lm / --speech_tokenizer). Accuracy per task and modality is printed and written.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", help="a pipeline run folder (its pretrain/, speech_tokenizer/, spoken_qa/ stages)")
    parser.add_argument("--lm", help="speech-text LM folder (default: RUN/pretrain)")
    parser.add_argument("--speech_tokenizer", help="speech tokenizer folder (default: RUN/speech_tokenizer)")
    parser.add_argument("--spoken_qa", help="score this spoken QA manifest (JSONL) instead of the whole suite")
    parser.add_argument("--output", help="JSON file (--spoken_qa) or folder (suite; default RUN/eval_cli)")
    parser.add_argument("--batch_size", type=int, default=32)


def _print_accuracy(accuracy: dict) -> None:
    for modality, per_task in accuracy.items():
        for task, r in per_task.items():
            print(f"{modality}  task {task:>2}: ranked {100 * r['ranked']:5.1f}%  generated {100 * r['generated']:5.1f}%"
                  f"  chance {100 * r['chance']:5.1f}%  (n={r['n']})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from modeling_speechtext.evaluation.lm_suite import EvalConfig, evaluate_lm, score_manifest

    run_dir = Path(args.run) if args.run else None
    lm = args.lm or (str(run_dir / "pretrain") if run_dir else None)
    tokenizer = args.speech_tokenizer or (str(run_dir / "speech_tokenizer") if run_dir else None)
    if lm is None or tokenizer is None:
        raise ValueError("give --run, or both --lm and --speech_tokenizer")
    if args.spoken_qa:
        result = score_manifest(args.spoken_qa, lm, tokenizer, args.batch_size)
        _print_accuracy(result["accuracy"])
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.output}")
        return 0
    if run_dir is None:
        raise ValueError("the whole suite needs --run (its spoken_qa/ and speech_tokens/ stages)")
    # the settings of the run's own eval stage when it has one (else the defaults), into a folder of its own so the
    # stage's metrics.json / report.md next to its stage.json are not overwritten
    out = Path(args.output) if args.output else run_dir / "eval_cli"
    marker = run_dir / "eval" / "stage.json"
    settings = json.loads(marker.read_text())["config"] if marker.is_file() else {}
    settings = {k: v for k, v in settings.items() if k in EvalConfig.__dataclass_fields__}
    cfg = EvalConfig.from_dict({**settings, "lm": lm, "speech_tokenizer": tokenizer, "batch_size": args.batch_size})
    metrics = evaluate_lm(cfg, run_dir, out)
    for vset, accuracy in metrics["spoken_qa"].items():
        print(f"== {vset}")
        _print_accuracy(accuracy)
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0

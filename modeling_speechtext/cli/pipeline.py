"""`speechtext pipeline --preset demo --output_dir runs/demo`: every stage, each into its own subfolder."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="demo", help="micro | demo | tiny | paper, or a folder of stage YAMLs")
    parser.add_argument("--output_dir", required=True, help="run folder; one subfolder per stage")
    parser.add_argument("--stages", nargs="+", help="run only these stages (default: the preset's list)")
    parser.add_argument("--force", nargs="+", default=[], help="rebuild these stages (and every later one)")
    parser.add_argument(
        "--set", dest="overrides", action="append", metavar="STAGE.KEY=VALUE", help="override a config value"
    )


def run(args: argparse.Namespace) -> int:
    from modeling_speechtext.pipeline.presets import parse_overrides
    from modeling_speechtext.pipeline.runner import run_pipeline

    report = run_pipeline(
        args.preset, args.output_dir, stages=args.stages, overrides=parse_overrides(args.overrides), force=args.force
    )
    for entry in report["stages"]:
        print(f"{entry['stage']:<18} {entry['status']:<8} {entry['seconds']:>8.1f}s  {json.dumps(entry['metrics'])}")
    print(f"report: {args.output_dir}/pipeline.json")
    return 0


__all__ = ["add_arguments", "run"]

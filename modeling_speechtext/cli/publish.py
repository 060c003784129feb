"""`speechtext publish`: Hub-ready repositories of a run's models and datasets, and their upload with `--push`.

    speechtext publish --run runs/demo --namespace my-org                  # folders in runs/demo/publish
    speechtext publish --run runs/demo --namespace my-org --push           # and upload (token: HF_TOKEN / login)

Re-running after an interrupted upload sends only what the Hub does not have yet. See
`modeling_speechtext/hub/publish.py` for the list of repositories.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a pipeline run folder")
    parser.add_argument("--namespace", required=True, help="Hub user or organisation")
    parser.add_argument("--output", help="where the repository folders go (default: <run>/publish)")
    parser.add_argument("--push", action="store_true", help="upload them (huggingface_hub; HF_TOKEN or a login)")
    parser.add_argument("--private", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modeling_speechtext.hub.publish import prepare_run, push

    repos = prepare_run(args.run, args.namespace, args.output or Path(args.run) / "publish")
    for r in repos:
        print(f"{r.repo_type:7s} {r.repo_id:45s} {r.folder}")
    if args.push:
        for repo_id, url in push(repos, private=args.private).items():
            print(f"pushed {repo_id}: {url}")
    return 0


__all__ = ["add_arguments", "run"]

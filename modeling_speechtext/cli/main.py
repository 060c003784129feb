"""`speechtext` console script.

Each subcommand lives in `modeling_speechtext/cli/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; those modules import torch/transformers only inside `run`, so `speechtext --help`
stays instant (transformers alone takes ~5 s to import).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). Later stages register their commands here.
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("modeling_speechtext.cli.pipeline", "run the stages of a preset end to end (resumable)"),
    "transcribe": ("modeling_speechtext.cli.transcribe", "audio -> speech tokens -> text"),
    "resynthesize": ("modeling_speechtext.cli.resynthesize", "audio -> speech tokens -> decoder -> audio"),
    "interleave": ("modeling_speechtext.cli.interleave", "text -> interleaved speech-text data with a T2T model"),
    "eval": ("modeling_speechtext.cli.evaluate", "evaluate a speech-text LM: spoken bAbI QA, cloze, ASR/TTS"),
    "chat": ("modeling_speechtext.cli.chat", "ask the dialogue model a spoken or typed question; text + speech out"),
    "publish": ("modeling_speechtext.cli.publish", "Hub-ready repos of a run's models and datasets; --push uploads"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechtext", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # User-facing errors (bad preset, bad audio, bad config) get one clear line, not a traceback.
        if args.verbose:
            raise
        print(f"speechtext {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["COMMANDS", "build_parser", "main"]

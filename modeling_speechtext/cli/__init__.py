"""The `speechtext` console script; one module per subcommand, heavy imports inside `run` only."""

from modeling_speechtext.cli.main import main

__all__ = ["main"]

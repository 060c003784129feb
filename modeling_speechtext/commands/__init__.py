"""Subcommands of the `speechtext` console script (see cli.py)."""

__all__: list[str] = []

"""Metrics (one WER) and the evaluators of each stage."""

__all__: list[str] = []

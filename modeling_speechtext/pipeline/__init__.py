"""Orchestration: presets and the stage runner (the only layer, with the CLI, that imports
`dataset_builders` and `recipes`).
"""

__all__: list[str] = []

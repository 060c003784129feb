"""One TRL-style training script per stage; `configs/<preset>/<stage>.yaml` hold the presets."""

__all__: list[str] = []

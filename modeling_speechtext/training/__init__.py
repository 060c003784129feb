"""Training-only pieces the recipes share: augmentation, auxiliary losses."""

__all__: list[str] = []

"""A stage's YAML dict -> its config dataclass, with unknown keys an error (a typo must not pass silently).

Written once for the stage configs that are dataclasses with a `validate()` method (corpus builders, eval).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], config: Mapping[str, Any], stage: str) -> T:
    """`cls(**config)`, validated; a key that is no field of `cls` raises a ValueError naming the known keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{stage} config: unknown key(s) {unknown}; known keys are {sorted(known)}")
    cfg = cls(**dict(config))
    cfg.validate()
    return cfg


__all__ = ["config_from_dict"]

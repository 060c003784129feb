"""Where the offline data lives: `$SPEECHTEXT_DATA_DIR`, else `../shared/data` beside the project checkout.

Configs name data relative to that root (e.g. `qa/babi/tasks_1-20_v1-2/en`) so the same preset works in CI,
on a laptop and on a cluster where the data sits elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """The offline data root, or None when this machine has none (then Hub datasets must be named)."""
    env = os.environ.get("SPEECHTEXT_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def resolve_data_path(path: str | os.PathLike) -> Path:
    """An absolute path or one that exists as given wins; otherwise it is taken relative to the data root."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    root = shared_data_dir()
    if root is None:
        raise FileNotFoundError(
            f"{path!s} does not exist and no offline data root was found; set SPEECHTEXT_DATA_DIR or pass an absolute path"
        )
    resolved = root / p
    if not resolved.exists():
        raise FileNotFoundError(f"{path!s} not found (looked in {resolved})")
    return resolved


__all__ = ["PROJECT_ROOT", "shared_data_dir", "resolve_data_path"]

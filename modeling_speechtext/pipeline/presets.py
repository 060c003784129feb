"""Presets are folders of YAML, one file per stage: `recipes/configs/<preset>/<stage>.yaml`.

The same file is the `--config` of the stage's recipe script, so a stage run alone and a stage run by the
pipeline see one configuration. `pipeline.yaml` holds what all stages share (seed, stage list).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from modeling_speechtext.paths import PROJECT_ROOT

CONFIG_ROOT = PROJECT_ROOT / "recipes" / "configs"


def list_presets() -> list[str]:
    return sorted(p.name for p in CONFIG_ROOT.iterdir() if (p / "pipeline.yaml").is_file())


def preset_dir(preset: str | Path) -> Path:
    """A preset name (`demo`) or a folder of YAML files (for users' own presets)."""
    p = Path(preset)
    if p.is_dir():
        return p
    d = CONFIG_ROOT / str(preset)
    if not (d / "pipeline.yaml").is_file():
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(list_presets())} (or pass a folder)")
    return d


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """`stage.key=value` strings -> {stage: {key: value}}; values are parsed as YAML (`3`, `true`, `[1,2]`)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"override {item!r} must look like stage.key=value")
        key, value = item.split("=", 1)
        stage, field = key.split(".", 1)
        out.setdefault(stage, {})[field] = yaml.safe_load(value)
    return out


def load_preset(preset: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole preset: `{"pipeline": {...}, "<stage>": {...}, ...}` with overrides applied and seed shared."""
    d = preset_dir(preset)
    cfg: dict[str, Any] = {"pipeline": load_yaml(d / "pipeline.yaml")}
    for f in sorted(d.glob("*.yaml")):
        if f.stem != "pipeline":
            cfg[f.stem] = load_yaml(f)
    for stage, values in (overrides or {}).items():
        cfg.setdefault(stage, {}).update(copy.deepcopy(values))
    seed = cfg["pipeline"].get("seed", 0)
    for stage, section in cfg.items():
        if stage != "pipeline":
            section.setdefault("seed", seed)
    cfg["pipeline"]["preset"] = str(preset)
    return cfg


__all__ = ["CONFIG_ROOT", "list_presets", "preset_dir", "load_yaml", "parse_overrides", "load_preset"]

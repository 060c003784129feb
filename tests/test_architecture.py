"""The layering rule of docs/ARCHITECTURE.md, checked by walking every import (top-level and inside functions).

A module may import a lower layer or its own room, never a higher layer, another room of its own layer, or
(a model folder) anything of ours outside that folder: a model folder is what `save_pretrained` copies as
remote code. Import circles between modules fail too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = "modeling_speechtext"
OURS = (PKG, "dataset_builders", "recipes")

# room -> layer. Lower layers never import higher ones.
LAYERS = {
    "core": 0,  # modeling_speechtext/*.py: constants, audio, text normalization, vocab, paths, hardware
    "models": 1,  # one folder per model, each a closed unit (checked separately)
    "generation": 2,
    "data": 3,
    "training": 3,
    "evaluation": 4,
    "hub": 5,
    "dataset_builders": 6,
    "recipes": 6,
    "pipeline": 7,
    "cli": 8,
}
# third-party imports a remote-code model folder may use: what transformers itself depends on, and torchaudio
# (the decoder's mel and vocoder; transformers names a missing one when it loads remote code)
MODEL_DEPS = {"torch", "transformers", "huggingface_hub", "numpy", "safetensors", "torchaudio"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != PKG:
        return parts[0]
    if len(parts) > 2 or (ROOT / PKG / parts[1] / "__init__.py").exists() if len(parts) > 1 else False:
        return parts[1]
    return "core"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file; `from pkg import name` also yields pkg.name."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def our_modules() -> dict[str, Path]:
    modules = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = our_modules()


def resolve(target: str) -> str | None:
    """The module of ours an import names (`a.b.func` -> `a.b`), None for third-party."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def test_every_module_has_a_room():
    unknown = {m: room(m) for m in MODULES if room(m) not in LAYERS}
    assert not unknown, f"modules outside the map of docs/ARCHITECTURE.md: {unknown}"


def test_imports_point_down():
    violations = []
    for module, path in MODULES.items():
        src_room = room(module)
        for line, target in imports_of(path):
            dst = resolve(target)
            if dst is None or dst == module:
                continue
            dst_room = room(dst)
            if dst_room == src_room:
                continue
            if LAYERS[dst_room] >= LAYERS[src_room]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({src_room}) imports {dst} ({dst_room})")
    assert not violations, "imports that point up or sideways:\n" + "\n".join(dict.fromkeys(violations))


@pytest.mark.parametrize(
    "folder", sorted(p.name for p in (ROOT / PKG / "models").iterdir() if p.is_dir() and (p / "__init__.py").exists())
)
def test_model_folders_are_closed_units(folder):
    """Only siblings, the standard library and transformers' own dependencies: what remote code can import."""
    unit = f"{PKG}.models.{folder}"
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for path in sorted((ROOT / PKG / "models" / folder).glob("*.py")):
        for line, target in imports_of(path):
            top = target.split(".")[0]
            if target.startswith(unit + ".") or target == unit:
                continue
            if top in stdlib or top in MODEL_DEPS:
                continue
            if resolve(target) is None and top not in OURS:
                bad.append(f"{path.name}:{line} imports third-party {target}")
            elif resolve(target) is not None:
                bad.append(f"{path.name}:{line} imports {target} from outside the model folder")
    # relative imports inside a model folder must stay relative (save_pretrained copies them by relative name)
    for path in sorted((ROOT / PKG / "models" / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(unit):
                bad.append(f"{path.name}:{node.lineno} imports a sibling absolutely; remote code needs `from .x`")
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for _, target in imports_of(path):
            dst = resolve(target)
            # a package's __init__ is imported on the way to any of its modules; that is no circle
            if dst and dst != module and not module.startswith(dst + "."):
                graph[module].add(dst)
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_file_over_the_size_limit():
    """Files of one concern: the limit is ~500 lines (docs/ARCHITECTURE.md); 550 leaves room for a docstring."""
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 550}
    assert not big, f"files over 550 lines: {big}"

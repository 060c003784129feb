"""Run a script in a fresh Python where this project cannot be imported: what a user of a saved folder has."""

import subprocess
import sys

BLOCK_PACKAGE = """
import sys

class Block:  # the editable install would otherwise make our package importable
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_speechtext", "dataset_builders", "recipes"):
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
"""


def run_without_package(script: str, cwd, args=(), timeout: int = 180, **env) -> subprocess.CompletedProcess:
    """`script` (with `args` as `sys.argv[1:]`) after the import block, offline, in `cwd` (also its HOME, so no
    user cache is read); `env`: more environment variables."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + script, *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(cwd), "PYTHONPATH": "",
                              **env},
    )  # fmt: skip

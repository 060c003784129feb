"""`speechtext interleave --t2t DIR --text SOURCE --output_dir DIR --eta 0.3`: text -> interleaved speech-text data.

Resumable (rerun the same command after a crash), parallel with `--num_proc N` or under
`accelerate launch -m dataset_builders.interleaved ...` (same arguments), uploads with `--push_to_hub REPO`.
The flags and their mapping to the config live with the builder (`dataset_builders.interleaved.cli`), which must
run without this package's upper layers under `accelerate launch -m`; this command only wraps them.
"""

from __future__ import annotations

from dataset_builders.interleaved.cli import add_arguments, config_from_args, run

__all__ = ["add_arguments", "config_from_args", "run"]

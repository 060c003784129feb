"""The shipped accelerate configs parse with accelerate's own loader and say what their comments claim."""

from pathlib import Path

import pytest

ACCEL = Path(__file__).resolve().parent.parent / "recipes" / "accelerate"


@pytest.mark.parametrize(
    "name,kind", [("cpu_ddp", "MULTI_CPU"), ("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")]
)
def test_accelerate_config_loads(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCEL / f"{name}.yaml"))
    assert cfg.distributed_type.name == kind
    assert cfg.num_processes >= 2
    if name == "cpu_ddp":
        assert cfg.use_cpu and cfg.mixed_precision == "no"


def test_cpu_ddp_config_launches_a_recipe_for_two_steps(tmp_path):
    """The CPU config is not only valid YAML: `accelerate launch` with it runs the tokenizer recipe on 2 ranks."""
    import json
    import os
    import subprocess
    import sys

    from tests.test_speech_tokenizer_training import SHORT, make_corpus

    run = make_corpus(tmp_path / "run")
    cfg = {**SHORT, "max_steps": 2, "quantizer_warmup_steps": 1, "save_steps": 2, "max_train_clips": 16,
           "max_eval_clips": 4}  # fmt: skip
    flags = [x for k, v in cfg.items() for x in (f"--{k}", str(v))]
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file", str(ACCEL / "cpu_ddp.yaml"),
           "-m", "recipes.train_speech_tokenizer", "--run_dir", str(run), "--output_dir", str(tmp_path / "out"),
           *flags]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ACCEL.parent.parent, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 2

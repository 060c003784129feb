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

"""The shipped accelerate configs parse with accelerate's own loader and say what their comments claim."""

from pathlib import Path

import pytest

ACCEL = Path(__file__).resolve().parent.parent / "recipes" / "accelerate"


@pytest.mark.parametrize(
    "name,kind", [("cpu_ddp", "MULTI_GPU"), ("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")]
)
def test_accelerate_config_loads(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCEL / f"{name}.yaml"))
    assert cfg.distributed_type.name == kind
    assert cfg.num_processes >= 2
    if name == "cpu_ddp":
        # torchrun underneath (MULTI_CPU / use_cpu start one process without mpirun); CPU + gloo without GPUs
        assert not cfg.use_cpu and cfg.mixed_precision == "no" and cfg.num_processes == 2


def test_cpu_ddp_config_launches_a_recipe_for_two_steps(tmp_path):
    """The CPU config is not only valid YAML: `accelerate launch` with it runs the tokenizer recipe on 2 ranks."""
    import json

    from tests.test_speech_tokenizer_training import SHORT, launch_two_cpu_ranks, make_corpus

    run = make_corpus(tmp_path / "run")
    cfg = {**SHORT, "max_steps": 2, "quantizer_warmup_steps": 1, "save_steps": 2, "max_train_clips": 16,
           "max_batch_size": 4, "max_eval_clips": 4}  # fmt: skip
    flags = [x for k, v in cfg.items() for x in (f"--{k}", str(v))]
    proc = launch_two_cpu_ranks(["-m", "recipes.train_speech_tokenizer", "--run_dir", str(run), "--output_dir",
                                 str(tmp_path / "out"), *flags], ACCEL.parent.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rank 1] step 1: codebook initialised" in proc.stderr  # a second process really ran
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 2

"""Speech-text pretraining with 2 data-parallel processes: `accelerate launch` + recipes/accelerate/cpu_ddp.yaml.

cpu_ddp.yaml is MULTI_GPU + gloo so that torchrun really starts 2 ranks on CPU (`--cpu` or MULTI_CPU start ONE
process without mpirun). Each rank's stderr goes to its own file (torchrun's `--tee 3 --log_dir`), so the test sees
that rank 1 itself ran the recipe to its end, not only that rank 0 did.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mixture_fixtures import add_base_lm, make_mixture_run

pytestmark = pytest.mark.slow  # two torchrun processes, ~15 s

K = 16
STEPS, BATCH, MAX_LENGTH = 2, 2, 64
CONFIG = {
    "mixture": {"parts": {"text": {"share": 0.3}, "interleaved": {"share": 0.3}, "speech": {"share": 0.1},
                          "asr": {"share": 0.15}, "tts": {"share": 0.15}}},
    "max_steps": STEPS, "save_steps": STEPS, "keep_checkpoints": True, "max_length": MAX_LENGTH,
    "per_device_train_batch_size": BATCH, "learning_rate": 1e-2, "logging_steps": 1, "eval_strategy": "no",
    "report_to": "none", "eval_examples_per_part": 1, "seed": 0, "use_cpu": True,
}  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent


ABORT = "terminate called without an active exception"


def launch_two_cpu_ranks(args: list[str], log_dir: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    """One relaunch, only for one known failure: a rank aborting in C++ ("terminate called without an active
    exception", SIGABRT) as it starts the float32 evaluation. Seen once in ~12 runs (2026-12-07, inside the full
    suite only; 8 of 8 runs of this file alone passed); not reproduced on purpose, so not diagnosed. Any other
    failure fails the test at once, and a second abort fails it too."""
    accelerate = Path(sys.executable).with_name("accelerate")
    config = ROOT / "recipes" / "accelerate" / "cpu_ddp.yaml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for attempt in range(2):
        logs = log_dir if attempt == 0 else log_dir.with_name(log_dir.name + "_retry")
        cmd = [str(accelerate), "launch", "--config_file", str(config), "--tee", "3", "--log_dir", str(logs), *args]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0 or ABORT not in proc.stderr or "SIGABRT" not in proc.stderr:
            break
        import warnings

        warnings.warn(f"test_pretrain_ddp: a rank aborted ({ABORT!r}); relaunching once", stacklevel=2)
        if "--output_dir" in args:  # start over, not resume from what the aborted attempt saved
            import shutil

            shutil.rmtree(args[args.index("--output_dir") + 1], ignore_errors=True)
    if attempt:  # the rank logs the test reads are the successful attempt's
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)
        shutil.move(str(logs), str(log_dir))
    return proc


def rank_stderr(log_dir: Path, rank: int) -> str:
    """The stderr torchrun wrote for one rank: <log_dir>/<run id>/attempt_0/<rank>/stderr.log."""
    files = list(log_dir.glob(f"*/attempt_*/{rank}/stderr.log"))
    assert len(files) == 1, f"rank {rank}: {files}"
    return files[0].read_text()


def test_two_cpu_ranks_train_save_and_evaluate(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.vocab import SpeechVocab

    run = add_base_lm(make_mixture_run(tmp_path / "run", K), K)
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(CONFIG))
    out, logs = tmp_path / "out", tmp_path / "logs"
    proc = launch_two_cpu_ranks(["-m", "recipes.pretrain", "--config", str(tmp_path / "pretrain.yaml"),
                                 "--run_dir", str(run), "--output_dir", str(out)], logs)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]

    # two ranks: rank 0's process group had 2 members, and rank 1 rendered the mixture and, after training, reached
    # the per-part evaluation of the saved folder (it used to return first, and rank 0 then failed in a barrier)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    rank1 = rank_stderr(logs, 1)
    assert "rendering the mixture" in rank1 and "Traceback" not in rank1
    assert "training precision: float32" in rank1, rank1[-2000:]  # the float32 evaluator's arguments, on rank 1
    # one process sees at most BATCH rows of MAX_LENGTH tokens a step: more than that is both ranks' tokens summed
    assert metrics["train_tokens_seen"] > STEPS * BATCH * MAX_LENGTH

    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS == metrics["steps"]
    assert set(metrics["eval_loss_by_part"]) == set(CONFIG["mixture"]["parts"])

    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    vocab = SpeechVocab.from_tokenizer(tok)
    assert vocab.codebook_size == K and len(tok) == metrics["vocab_size"]
    assert model.get_input_embeddings().weight.shape[0] >= vocab.vocab_size_needed
    assert tok.convert_tokens_to_ids(f"<|audio_{K - 1}|>") == vocab.speech_token_range[-1]

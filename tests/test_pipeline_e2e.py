"""One end-to-end run of `speechtext pipeline --preset micro`: the stages tested together, through the CLI.

Marked slow; it still runs in CI (micro is seconds per stage). A second run must skip every stage.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from modeling_speechtext.paths import shared_data_dir
from modeling_speechtext.pipeline.presets import load_preset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shared_data_dir() is None, reason="needs the offline data (../shared/data)"),
]


def _run(out):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [
        sys.executable,
        "-m",
        "modeling_speechtext.cli.main",
        "pipeline",
        "--preset",
        "micro",
        "--output_dir",
        str(out),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.perf_counter() - start


def test_micro_pipeline_end_to_end(tmp_path):
    out = tmp_path / "micro"
    stages = load_preset("micro")["pipeline"]["stages"]
    _run(out)
    report = json.loads((out / "pipeline.json").read_text())
    assert [e["stage"] for e in report["stages"]] == stages
    assert all(e["status"] == "done" for e in report["stages"]), report
    for stage in stages:
        marker = json.loads((out / stage / "stage.json").read_text())
        assert marker["metrics"], f"stage {stage} reported no numbers"
    # the base LM is a stock causal LM over the text tokenizer's vocabulary
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(out / "base_lm")
    assert base.config.vocab_size == len(AutoTokenizer.from_pretrained(out / "text_tokenizer"))

    proc, seconds = _run(out)
    report = json.loads((out / "pipeline.json").read_text())
    assert all(e["status"] == "skipped" for e in report["stages"]), report
    assert "skipped" in proc.stdout

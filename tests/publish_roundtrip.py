"""`speechtext publish --push` to the fake Hub (../shared/tools/fake_hub.py), then a fresh process loads every
model repository with `from_pretrained` (remote code where custom) and every dataset with `load_dataset(...,
streaming=True)`, and must get what the published folders give locally (each a copy of the run's stage, or the
chat composite built from it): called from the micro end-to-end test (it has a run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One fingerprint per repository, computed by the same code locally (from the run's folders) and in the fresh
# process (from the Hub): logits on fixed ids, speech tokens of a fixed clip, a decoded waveform, first rows.
FINGERPRINTS = r"""
import json, sys
import numpy as np, torch
from transformers import AutoModel, AutoModelForCausalLM

@torch.no_grad()
def fingerprints(where, trust):
    out = {}
    for name in ("text-to-token", "base-lm", "lm", "chat-lm"):
        lm = AutoModelForCausalLM.from_pretrained(where(name, "model"), dtype=torch.float32).eval()
        ids = torch.arange(1, 9)[None] % lm.config.vocab_size
        out[name] = round(float(lm(input_ids=ids).logits.double().sum()), 3)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    st = AutoModel.from_pretrained(where("speech-tokenizer", "model"), trust_remote_code=trust, dtype=torch.float32)
    from transformers import AutoFeatureExtractor
    fe = AutoFeatureExtractor.from_pretrained(where("speech-tokenizer", "model"), trust_remote_code=trust)
    feats = fe(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
    ids, n = st.eval().encode(feats)
    tokens = ids[0, : int(n[0])].tolist()
    out["speech-tokenizer"] = tokens
    dec = AutoModel.from_pretrained(where("speech-decoder", "model"), trust_remote_code=trust, dtype=torch.float32)
    out["speech-decoder"] = round(float(dec.eval().generate_mel(tokens).mel.double().sum()), 2)
    chat = AutoModel.from_pretrained(where("chat", "model"), trust_remote_code=trust, dtype=torch.float32).eval()
    out["chat"] = [chat.encode_speech(feats)[0][:8], round(float(chat(input_ids=torch.arange(1, 9)[None]).logits
                   .double().sum()), 3)]
    from datasets import load_dataset
    for name in ("speech-tokens", "interleaved", "dialogue"):
        rows = load_dataset(where(name, "dataset"), split="train", streaming=True)
        first = next(iter(rows))
        out[name] = json.dumps({k: first[k] for k in sorted(first) if k in ("id", "text", "speech_ids", "turns")},
                               sort_keys=True, default=str)[:2000]
    return out
"""


def run_roundtrip(out: Path, tmp_path: Path) -> None:
    import importlib.util

    import pytest

    path = ROOT.parent / "shared" / "tools" / "fake_hub.py"
    if not path.is_file():
        pytest.skip(f"no {path}: the publishing round trip needs the fake Hub")
    spec = importlib.util.spec_from_file_location("fake_hub", path)  # no sys.path change in the test process
    fake_hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake_hub)
    server, url = fake_hub.start_in_thread(0)
    env = {**os.environ, "HF_ENDPOINT": url, "HF_TOKEN": "hf_fake", "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets")}  # fmt: skip
    try:
        cli = [sys.executable, "-m", "modeling_speechtext.cli.main", "publish", "--run", str(out), "--namespace",
               "tester", "--output", str(tmp_path / "publish"), "--push"]  # fmt: skip
        proc = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        repos = json.loads((tmp_path / "publish" / "publish.json").read_text())
        assert {(r["repo_type"], r["repo_id"]) for r in repos if r["repo_type"] == "space"} == {
            ("space", "tester/speechtext-chat")
        }
        assert {r["repo_id"] for r in repos} >= {f"tester/speechtext-{n}" for n in (
            "speech-tokenizer", "speech-decoder", "text-to-token", "base-lm", "lm", "chat-lm", "chat",
            "speech-tokens", "interleaved", "dialogue")}  # fmt: skip
        again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)  # resumable: no error
        assert again.returncode == 0, again.stderr[-3000:]
        local_dirs = {r["repo_id"].split("speechtext-", 1)[1]: r["folder"] for r in repos if r["repo_type"] != "space"}
        scope: dict = {}
        exec(FINGERPRINTS, scope)  # noqa: S102 - the same code the fresh process runs
        local = scope["fingerprints"](lambda name, kind: local_dirs[name], True)
        script = FINGERPRINTS + (
            "\nfrom huggingface_hub import HfApi\n"
            "space = HfApi().list_repo_files('tester/speechtext-chat', repo_type='space')\n"
            "from huggingface_hub import ModelCard, SpaceCard\n"
            "cards = {n: ModelCard.load('tester/speechtext-' + n).data.base_model for n in ('lm', 'chat-lm', 'chat')}\n"
            "cards['space'] = SpaceCard.load('tester/speechtext-chat', repo_type='space').data.models\n"
            "print(json.dumps({'fp': fingerprints(lambda n, k: 'tester/speechtext-' + n, True), 'space': space,\n"
            "                  'cards': cards}))\n"
        )
        from remote_code import run_without_package

        remote = run_without_package(script, tmp_path, timeout=300, **{k: env[k] for k in (
            "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE")})  # fmt: skip
        assert remote.returncode == 0, remote.stderr[-3000:]
        result = json.loads(remote.stdout.strip().splitlines()[-1])
        got, space = result["fp"], set(result["space"])
        assert got == json.loads(json.dumps(local)), {
            k: (local[k], got.get(k)) for k in local if got.get(k) != local[k]
        }
        # the Space: the app, its engine (the package) and which model repos it loads
        assert {"app.py", "tools_tabs.py", "README.md", "requirements.txt", "space.json",
                "modeling_speechtext/generation/speech_text_chat.py"} <= space, sorted(space)[:20]  # fmt: skip
        # the Hub's model tree: each card names the repo it was trained from, the Space the models it runs
        assert result["cards"] == {"lm": "tester/speechtext-base-lm", "chat-lm": "tester/speechtext-lm",
                                   "chat": ["tester/speechtext-chat-lm", "tester/speechtext-speech-tokenizer"],
                                   "space": ["tester/speechtext-chat", "tester/speechtext-speech-decoder",
                                             "tester/speechtext-text-to-token"]}  # fmt: skip
        config = json.loads((tmp_path / "publish" / "space" / "space.json").read_text())
        assert config == {"model": "tester/speechtext-chat", "decoder": "tester/speechtext-speech-decoder",
                          "t2t": "tester/speechtext-text-to-token"}  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()

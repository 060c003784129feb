"""The interleaved builder at work with a tiny random text-to-token model: shards, determinism across worker
layouts, kill -9 + resume, 2 accelerate ranks, fake-Hub streaming and upload, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from t2t_fixtures import SENTENCES, plain_text_lm, tiny_t2t, tiny_text_tokenizer

from dataset_builders.interleaved import build_interleaved
from modeling_speechtext.vocab import SpeechVocab

ROOT = Path(__file__).resolve().parent.parent
FAKE_HUB = ROOT.parent / "shared" / "tools" / "fake_hub.py"
N_DOCS = 64


def _documents():
    import random

    rng = random.Random(0)
    docs = [" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 10))) for _ in range(N_DOCS)]
    docs[3] = ""  # empty
    docs[5] = "東京 !!! 42"  # nothing speakable
    docs[7] = "Café au lait with Zoë. " * 1000  # huge (> max_document_chars) and non-ASCII
    docs[9] = "Mary went to 東京 and back."  # partly unspeakable
    return docs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from datasets import Dataset, DatasetDict

    root = tmp_path_factory.mktemp("interleaved")
    # budget 3 tokens/char: most random generations end before it, some are cut (runaways are exercised too)
    tiny_t2t(codebook_size=32, max_tokens_per_char=3.0, min_token_budget=4).save_pretrained(root / "t2t")
    docs = _documents()
    ids = [f"doc-{i:04d}" for i in range(N_DOCS)]
    DatasetDict(train=Dataset.from_dict({"id": ids, "text": docs, "source": ["test"] * N_DOCS})).save_to_disk(
        root / "documents"
    )
    cfg = {
        "source": str(root / "documents"),
        "t2t": str(root / "t2t"),
        "eta": 0.3,
        "granularity": "word",
        "span_length": {"distribution": "poisson", "mean": 4},
        "seed": 7,
        "documents_per_shard": 8,
        "chunk_documents": 8,
    }
    stats = build_interleaved({**cfg, "output_dir": str(root / "reference")})
    return root, cfg, stats


def _rows(out: Path) -> dict:
    files = sorted((out / "data").glob("train-*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate documents"
    return {r["id"]: r for r in rows}


def test_build_outputs_stats_card_and_bad_inputs(world):
    root, cfg, stats = world
    out = root / "reference"
    rows = _rows(out)
    assert len(rows) == N_DOCS - 2 == stats["documents"]
    assert "doc-0003" not in rows and "doc-0005" not in rows
    assert stats["skipped_empty"] == 1 and stats["skipped_no_speakable_text"] == 1
    assert stats["truncated_documents"] == 1 and stats["spans_runaway"] >= 1
    assert stats["shards"] == 8 and len(list((out / "data").glob("train-*-of-00008.parquet"))) == 8
    # a random model: some spans run away and stay text, so eta lands below 0.3
    assert 0.05 < stats["eta_achieved_words"] < 0.4 and stats["speech_to_text_token_ratio"] > 0
    vocab = SpeechVocab(**stats["vocab"])
    n_speech_spans = 0
    for r in rows.values():  # segments tile input_ids; speech sits between the markers
        pos = 0
        for seg in r["segments"]:
            piece = r["input_ids"][pos : pos + seg["n_tokens"]]
            if seg["modality"] == "speech":
                n_speech_spans += 1
                assert piece[0] == vocab.begin_of_audio_id and piece[-1] == vocab.end_of_audio_id
                assert len(vocab.token_to_speech_ids(piece[1:-1], strict=True)) == seg["n_tokens"] - 2
            else:
                assert not any(vocab.is_speech_token(t) for t in piece)
            pos += seg["n_tokens"]
        assert pos == len(r["input_ids"]) - 1 and r["input_ids"][-1] == 0  # eos
    assert n_speech_spans == stats["spans_speech"] > 0
    assert sum(r["n_speech_tokens"] for r in rows.values()) == stats["speech_tokens"]
    card = (out / "README.md").read_text()
    assert "path: data/train-*.parquet" in card and "speech-to-text token ratio" in card
    assert "https://github.com/)" not in card and "https://arxiv.org/abs/2411.17607" in card  # no placeholder link
    assert (out / "span_lengths.png").stat().st_size > 1000
    assert json.loads((out / "stats.json").read_text())["documents"] == N_DOCS - 2
    from datasets import load_dataset

    ds = load_dataset(str(out), split="train", cache_dir=str(root / "hf_cache"))
    assert len(ds) == N_DOCS - 2 and ds.features["input_ids"].feature.dtype == "int32"
    # same config, other output dir: the config check refuses to mix builds, overwrite rebuilds
    with pytest.raises(ValueError, match="different config"):
        build_interleaved({**cfg, "eta": 0.5, "output_dir": str(out)})


def test_same_rows_with_other_shards_and_chunks(world):
    root, cfg, _ = world
    other = root / "other_layout"
    build_interleaved({**cfg, "documents_per_shard": 50, "chunk_documents": 5, "output_dir": str(other)})
    assert _rows(other) == _rows(root / "reference")  # per-document seeds + batch-invariant synthesis


def test_killed_build_resumes_with_num_proc_without_duplicates_or_gaps(world):
    root, cfg, _ = world
    out = root / "killed"
    args = f"--t2t {cfg['t2t']} --text {cfg['source']} --output_dir {out} --eta 0.3 --span_mean 4 --seed 7"
    cmd = [sys.executable, "-m", "dataset_builders.interleaved", *args.split()]
    cmd += ["--documents_per_shard", "4", "--chunk_documents", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "data").glob("train-*.parquet")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "data").glob("train-*.parquet")))
    assert 1 <= done_before < 16, "the kill should land mid-run"
    result = subprocess.run(  # the restart also spreads the missing shards over 2 local processes
        cmd + ["--num_proc", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"rank 0/1: {16 - done_before} of 16 shards to build" in result.stderr  # only the missing ones
    assert len(list((out / "data").glob("train-*.parquet"))) == 16
    assert not list((out / "data").glob(".*tmp"))
    assert _rows(out) == _rows(root / "reference")  # exactly the rows of the uninterrupted build


def test_two_accelerate_ranks_split_the_shards(world):
    root, cfg, _ = world
    out = root / "ranks"
    # accelerate's MULTI_CPU mode needs mpirun; `--multi_gpu` is torchrun underneath and the builder uses gloo on CPU
    launch = "--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
    args = f"--t2t {cfg['t2t']} --text {cfg['source']} --output_dir {out} --span_mean 4 --seed 7"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch.split(), "--main_process_port", "29533"]
    cmd += [
        "-m",
        "dataset_builders.interleaved",
        *args.split(),
        *"--documents_per_shard 8 --chunk_documents 8".split(),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0/2: 4 of 8 shards" in result.stderr and "rank 1/2: 4 of 8 shards" in result.stderr
    assert _rows(out) == _rows(root / "reference")
    assert json.loads((out / "stats.json").read_text())["documents"] == N_DOCS - 2


def test_text_files_and_bad_models(world, tmp_path):
    root, cfg, _ = world
    txt = tmp_path / "lines.txt"
    txt.write_text("\n".join(SENTENCES * 3) + "\n\n")
    stats = build_interleaved(
        {"source": str(txt), "t2t": cfg["t2t"], "output_dir": str(tmp_path / "out"), "documents_per_shard": 10}
    )
    rows = _rows(tmp_path / "out")
    assert stats["documents"] == len(rows) == 18 and "000000000" in rows  # row index as id, blank line skipped
    tok = tiny_text_tokenizer()
    plain_text_lm(tok).save_pretrained(tmp_path / "text_lm")
    tok.save_pretrained(tmp_path / "text_lm")
    with pytest.raises(ValueError, match="lacks the speech tokens"):
        build_interleaved({"source": str(txt), "t2t": str(tmp_path / "text_lm"), "output_dir": str(tmp_path / "x")})
    with pytest.raises(ValueError, match="no text column 'body'"):
        build_interleaved({**cfg, "text_column": "body", "output_dir": str(tmp_path / "y")})
    with pytest.raises(ValueError, match="no split 'dev'"):
        build_interleaved({**cfg, "split": "dev", "output_dir": str(tmp_path / "y")})
    with pytest.raises(ValueError, match="unknown interleaved config keys"):
        build_interleaved({**cfg, "etaa": 0.3, "output_dir": str(tmp_path / "y")})


_HUB_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {fake_dir!r})
import fake_hub
srv, url = fake_hub.start_in_thread(0)
os.environ.update(HF_ENDPOINT=url, HF_TOKEN="hf_fake", HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0")
from datasets import Dataset, load_dataset
Dataset.from_dict({{"text": {docs!r}}}).push_to_hub("someone/tiny-text")
from dataset_builders.interleaved import build_interleaved
stats = build_interleaved({{"source": "someone/tiny-text", "t2t": {t2t!r}, "output_dir": {out!r},
                           "documents_per_shard": 5, "push_to_hub": "someone/tiny-interleaved"}})
from huggingface_hub import HfApi
files = sorted(HfApi().list_repo_files("someone/tiny-interleaved", repo_type="dataset"))
back = load_dataset("someone/tiny-interleaved", split="train")
print(json.dumps({{"files": files, "rows": len(back), "documents": stats["documents"], "url": stats["hub_url"]}}))
"""


@pytest.mark.skipif(not FAKE_HUB.is_file(), reason="needs ../shared/tools/fake_hub.py")
def test_stream_from_hub_and_push_to_hub(world, tmp_path):
    root, cfg, _ = world
    script = _HUB_SCRIPT.format(
        fake_dir=str(FAKE_HUB.parent), docs=SENTENCES * 2, t2t=cfg["t2t"], out=str(tmp_path / "out")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["documents"] == report["rows"] == 12
    assert "README.md" in report["files"] and "stats.json" in report["files"]
    assert "data/train-00000-of-00003.parquet" in report["files"] and "tokenizer/tokenizer.json" in report["files"]


def test_fingerprint_follows_content_not_file_dates(world, tmp_path):
    """An identical re-save of the model keeps every shard; an edited source of the same name is a new build."""
    import shutil

    from datasets import load_from_disk

    root, cfg, _ = world
    t2t, docs, out = tmp_path / "t2t", tmp_path / "documents", tmp_path / "build"
    shutil.copytree(root / "t2t", t2t)
    shutil.copytree(root / "documents", docs)
    small = {**cfg, "t2t": str(t2t), "source": str(docs), "max_documents": 16, "output_dir": str(out)}
    build_interleaved(small)
    shards = sorted((out / "data").glob("*.parquet"))
    written = [p.stat().st_mtime_ns for p in shards]
    for weights in t2t.glob("*.safetensors"):  # same bytes, new date (what save_pretrained of the same model does)
        data = weights.read_bytes()
        weights.unlink()
        weights.write_bytes(data)
    time.sleep(0.01)
    build_interleaved(small)  # before the fix: the mtime changed the fingerprint -> "different config"
    assert [p.stat().st_mtime_ns for p in shards] == written
    edited = load_from_disk(str(docs))
    edited["train"] = edited["train"].map(lambda row: {"text": row["text"].replace("Mary", "John")})
    edited.save_to_disk(str(tmp_path / "edited"))
    shutil.rmtree(docs)
    shutil.move(tmp_path / "edited", docs)
    with pytest.raises(ValueError, match="different config"):
        build_interleaved(small)  # before the fix: the old shards were silently reused for the new text


def test_streamed_source_is_read_once_not_per_shard(world, tmp_path, monkeypatch):
    """8 shards of a streamed parquet source read each row once (64 reads), and give the reference rows; resuming
    with 3 shards missing reads up to the last one once more. Before the fix each shard re-streamed its prefix
    (`skip(start).take(n)`): 8 + 16 + ... + 64 = 288 reads, quadratic in the number of shards."""
    import pyarrow as pa

    import dataset_builders.interleaved.build as build_module
    from dataset_builders.interleaved.sources import open_text_source

    root, cfg, _ = world
    docs, ids = _documents(), [f"doc-{i:04d}" for i in range(N_DOCS)]
    pq.write_table(pa.table({"id": ids, "text": docs}), tmp_path / "docs.parquet", row_group_size=8)
    reads = []

    def counting_source(config):
        ds, n = open_text_source(config)
        return ds.map(lambda row: reads.append(row["id"]) or row), n  # counts every row the stream yields

    monkeypatch.setattr(build_module, "open_text_source", counting_source)
    streamed = {**cfg, "source": str(tmp_path / "docs.parquet"), "streaming": True, "max_documents": N_DOCS}
    out = tmp_path / "streamed"
    build_interleaved({**streamed, "output_dir": str(out)})
    assert len(reads) == N_DOCS and reads == ids  # one pass, in order
    assert _rows(out) == _rows(root / "reference")
    shards = sorted((out / "data").glob("train-*.parquet"))
    for k in (1, 4, 6):  # lost shards: the rebuild reads past the built ones once, no re-reads
        shards[k].unlink()
    reads.clear()
    build_interleaved({**streamed, "output_dir": str(out)})
    assert len(reads) == 7 * 8 and reads == ids[: 7 * 8]
    assert _rows(out) == _rows(root / "reference")  # exact resume: nothing lost, nothing duplicated


def test_chunks_without_any_speech_span(world, tmp_path):
    """A chunk in which no document gets a span (eta 0, or only empty documents) is written as plain text rows;
    before the fix the builder handed the synthesizer an empty batch and the tokenizer raised IndexError."""
    root, cfg, _ = world
    stats = build_interleaved({**cfg, "eta": 0.0, "output_dir": str(tmp_path / "eta0")})
    rows = _rows(tmp_path / "eta0")
    assert len(rows) == stats["documents"] == N_DOCS - 2 and stats["spans_speech"] == 0
    assert all(seg["modality"] == "text" for r in rows.values() for seg in r["segments"])
    assert stats["speech_tokens"] == 0 and stats.get("synthesized_sentences", 0) == 0
    blank = tmp_path / "blank.txt"
    blank.write_text("東京\n!!!\n" + "\n".join(SENTENCES) + "\n")  # the first chunk holds only unspeakable lines
    stats = build_interleaved(
        {"source": str(blank), "t2t": cfg["t2t"], "output_dir": str(tmp_path / "blank"), "chunk_documents": 2}
    )
    assert stats["documents"] == len(SENTENCES) and stats["skipped_no_speakable_text"] == 2

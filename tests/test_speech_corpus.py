"""The speech corpus builder: output contract, held-out splits, determinism, crash + resume, presets, Hub mapping."""

import io
import json
import os
import signal
import subprocess
import sys
import zlib

import numpy as np
import pytest
import soundfile as sf
import yaml

from dataset_builders import speech_corpus as sc
from dataset_builders import tts_engines as te
from dataset_builders.tts_engines import EspeakEngine, missing_voices, parse_voice, speaker_of
from dataset_builders.tts_engines import registry as tts_registry
from modeling_speechtext.pipeline.presets import CONFIG_ROOT

NAMES = ["Mary", "John", "Sandra", "Daniel"]
PLACES = ["kitchen", "garden", "office", "bedroom", "hallway"]
VERBS = ["went to", "moved to", "journeyed to"]

CONFIG = {
    "train_voices": ["espeak:en-us+m1", "espeak:en-gb-x-rp+f2", "flite:kal16", "festival:kal_diphone"],
    "test_voices": ["espeak:en-us+m7", "flite:awb"],
    "max_sentences": {"train": 10, "validation": 3, "test": 3},
    "voices_per_sentence": {"train": 2, "validation": 1, "test_unseen_voices": 2},
    "speed_range": [0.95, 1.05],
    "shard_size": 6,
    "num_proc": 1,
    "seed": 3,
}


def _sentences():
    from datasets import Dataset, DatasetDict

    all_s = [f"{n} {v} the {p}." for n in NAMES for v in VERBS for p in PLACES]
    rng = np.random.default_rng(0)
    rng.shuffle(all_s)
    train = all_s[:30] + all_s[30:32]  # two sentences leak into train: the builder must drop them from validation
    split = {"train": train, "validation": all_s[30:36], "test": all_s[36:42]}
    return DatasetDict(
        {
            k: Dataset.from_dict(
                {"id": [f"sent-{k[:2]}{i:03d}" for i in range(len(v))], "text": v, "source": ["t"] * len(v)}
            )
            for k, v in split.items()
        }
    )


def _needs_engines():
    missing = missing_voices(CONFIG["train_voices"] + CONFIG["test_voices"])
    if missing:
        pytest.skip(f"TTS voices not installed: {missing} (bash scripts/setup.sh)")


def _audio_bytes(ds):
    from datasets import Audio

    return [a["bytes"] for a in ds.cast_column("audio", Audio(decode=False))["audio"]]


@pytest.fixture(scope="module")
def sentences():
    return _sentences()


@pytest.fixture(scope="module")
def reference(sentences, tmp_path_factory):
    """One uninterrupted build every other test compares against."""
    _needs_engines()
    out = tmp_path_factory.mktemp("reference")
    return sc.build_speech_corpus(sentences, dict(CONFIG), out), out


@pytest.mark.tts
def test_contract_and_held_out_splits(reference, sentences):
    dd, out = reference
    assert list(dd) == ["train", "validation", "test_unseen_voices"]
    assert {s: len(d) for s, d in dd.items()} == {"train": 20, "validation": 3, "test_unseen_voices": 6}
    feats = dd["train"].features
    assert list(feats) == ["id", "audio", "text", "voice", "engine", "duration"]
    assert feats["audio"].sampling_rate == 16000 and feats["duration"].dtype == "float32"
    ids = [i for d in dd.values() for i in d["id"]]
    assert len(ids) == len(set(ids))
    train_voices = set(dd["train"]["voice"])
    assert not train_voices & set(dd["test_unseen_voices"]["voice"])
    assert not {speaker_of(v) for v in train_voices} & {speaker_of(v) for v in dd["test_unseen_voices"]["voice"]}
    assert set(dd["validation"]["voice"]) <= set(CONFIG["train_voices"])
    assert not set(dd["train"]["text"]) & set(dd["validation"]["text"])  # even though two leaked in the input
    assert not set(dd["train"]["text"]) & set(dd["test_unseen_voices"]["text"])
    assert set(dd["train"]["engine"]) == {parse_voice(v).engine for v in dd["train"]["voice"]}
    for row in dd["train"].select(range(4)):
        audio = row["audio"]["array"]
        assert row["audio"]["sampling_rate"] == 16000
        assert abs(len(audio) / 16000 - row["duration"]) < 1e-3
        assert 0.5 < row["duration"] < 5 and 0.85 < np.abs(audio).max() <= 0.91  # peak-normalised
        assert np.abs(audio[:160]).max() < 0.05  # starts with (padded) silence, not mid-word
    stats = json.loads((out / "stats.json").read_text())
    for split, ds in dd.items():  # the numbers describe the dataset on disk, not the plan
        assert stats["splits"][split]["utterances"] == len(ds)
        assert stats["splits"][split]["voices"] == sorted(set(ds["voice"]))
    seconds = sum(sum(ds["duration"]) for ds in dd.values())
    assert stats["utterances_total"] == 29 and stats["hours_total"] == pytest.approx(seconds / 3600, abs=3e-4)
    assert set(stats["synthesis"]["per_engine"]) == {"espeak", "flite", "festival"}
    assert stats["synthesis"]["x_realtime_wall"] > 1
    assert not (out / "shards").exists()  # keep_shards defaults to False


@pytest.mark.tts
def test_same_seed_same_corpus_other_seed_other_plan(reference, sentences, tmp_path):
    dd, _ = reference
    again = sc.build_speech_corpus(sentences, dict(CONFIG), tmp_path / "again")
    for split in dd:
        for col in ("id", "text", "voice", "duration"):
            assert dd[split][col] == again[split][col], (split, col)
        assert _audio_bytes(dd[split]) == _audio_bytes(again[split]), split
    cfg = sc.SpeechCorpusConfig.from_dict(dict(CONFIG, seed=4))
    sel = sc.select_sentences(sentences, cfg)
    plan = sc.plan_jobs(sel, cfg.train_voices, cfg.test_voices, cfg)
    assert [j["id"] for j in plan["train"]] != dd["train"]["id"]


@pytest.mark.tts
def test_crash_then_resume_equals_uninterrupted_build(reference, sentences, tmp_path, monkeypatch):
    dd, _ = reference
    out = tmp_path / "crashy"
    doomed = dd["train"]["text"][13]  # in the third train shard (6 jobs per shard)
    original = EspeakEngine.synthesize
    calls = {"n": 0}

    def flaky(self, text, voice, rate=None, pitch=None):
        calls["n"] += 1
        if text == doomed:
            raise RuntimeError("simulated crash")
        return original(self, text, voice, rate, pitch)

    monkeypatch.setattr(EspeakEngine, "synthesize", flaky)
    cfg = dict(CONFIG, keep_shards=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sc.build_speech_corpus(sentences, cfg, out)
    finished = sorted(p.name for p in (out / "shards").glob("*.parquet"))
    assert finished == ["train-00000-of-00004.parquet", "train-00001-of-00004.parquet"]
    assert not list((out / "shards").glob(".*.tmp")) and not (out / "dataset").exists()
    monkeypatch.setattr(EspeakEngine, "synthesize", original)

    resumed = sc.build_speech_corpus(sentences, cfg, out)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["synthesis"]["shards_resumed"] == 2 and stats["synthesis"]["shards"] == 4 + 1 + 1
    for split in dd:
        assert resumed[split]["id"] == dd[split]["id"]  # no duplicates, none missing, same order
        assert _audio_bytes(resumed[split]) == _audio_bytes(dd[split])
    # a finished build is reused as is; a changed plan throws the stale shards away
    sc.build_speech_corpus(sentences, cfg, out)
    changed = sc.build_speech_corpus(
        sentences, dict(cfg, seed=11, max_sentences={"train": 4, "validation": 1, "test": 1}), out
    )
    assert len(changed["train"]) == 8 and len(list((out / "shards").glob("train-*.parquet"))) == 2


@pytest.mark.tts
def test_parallel_build_is_identical(reference, sentences, tmp_path):
    dd, _ = reference
    par = sc.build_speech_corpus(sentences, dict(CONFIG, num_proc=2), tmp_path / "par")
    for split in dd:
        assert par[split]["id"] == dd[split]["id"]
        assert _audio_bytes(par[split]) == _audio_bytes(dd[split])


@pytest.mark.tts
def test_run_stage_reads_the_text_corpus(sentences, tmp_path):
    _needs_engines()
    sentences.save_to_disk(str(tmp_path / "text_corpus" / "sentences"))
    cfg = dict(CONFIG, max_sentences={"train": 3, "validation": 1, "test": 1})
    metrics = sc.run_stage(cfg, tmp_path / "speech_corpus", tmp_path)
    assert json.loads(json.dumps(metrics)) == metrics  # JSON-serialisable for stage.json
    from datasets import load_from_disk

    dd = load_from_disk(str(tmp_path / "speech_corpus" / "dataset"))
    assert list(dd) == list(sc.OUTPUT_SPLITS)
    assert metrics["train_utterances"] == len(dd["train"]) == 6  # 3 sentences x 2 voices
    for split, ds in dd.items():
        assert metrics[f"{split}_utterances"] == len(ds) and metrics[f"{split}_voices"] == len(set(ds["voice"]))
    assert metrics["engines"] == sorted({e for ds in dd.values() for e in ds["engine"]})
    with pytest.raises(FileNotFoundError, match="text_corpus"):
        sc.run_stage(cfg, tmp_path / "other", tmp_path / "nowhere")


def test_config_errors():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \[.voices.\]"):
        sc.SpeechCorpusConfig.from_dict(dict(CONFIG, voices=3))
    with pytest.raises(ValueError, match="share a speaker"):
        sc.SpeechCorpusConfig.from_dict(
            dict(CONFIG, test_voices=["festival:cmu_us_slt_arctic_hts"], train_voices=["flite:slt"])
        )
    with pytest.raises(ValueError, match="both"):
        sc.SpeechCorpusConfig.from_dict(dict(CONFIG, test_voices=["flite:kal16"]))
    with pytest.raises(ValueError, match="rate_range"):
        sc.SpeechCorpusConfig.from_dict(dict(CONFIG, rate_range=[1.2, 0.8]))
    with pytest.raises(ValueError, match="engine"):
        sc.SpeechCorpusConfig.from_dict(dict(CONFIG, train_voices=["espaek:en-us"]))


def test_trim_pads_both_ends_evenly():
    sr = 16000
    speech = np.sin(np.arange(sr) / 5).astype(np.float32) * 0.5
    for lead in (0, 400, 8000):  # none (eSpeak starts at sample 0), a little, a lot
        x = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(lead, np.float32)])
        y = sc.trim_silence(x, sr, trim_db=40, pad_ms=80)
        assert 0 <= len(y) - (len(speech) + 2 * 1280) <= 2 * 160  # up to a 10 ms frame of slack per side
        assert np.abs(y[:1280]).max() == 0 and np.abs(y[-1280:]).max() == 0


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny"])
def test_preset_yaml_voices(preset):
    cfg = yaml.safe_load((CONFIG_ROOT / preset / "speech_corpus.yaml").read_text())
    parsed = sc.SpeechCorpusConfig.from_dict(dict(cfg, seed=0))  # validates held-out speakers too
    engines = {parse_voice(v).engine for v in parsed.train_voices}
    if preset != "micro":
        assert len(engines) >= 3 and len(set(parsed.train_voices)) >= 8
        assert {parse_voice(v).engine for v in parsed.test_voices} >= {"espeak", "flite", "festival"}


@pytest.mark.tts
@pytest.mark.parametrize("preset", ["micro", "demo", "tiny"])
def test_preset_voices_are_installed(preset):
    """Every declared voice exists on a machine set up by scripts/setup.sh (a typo would silently drop one)."""
    cfg = yaml.safe_load((CONFIG_ROOT / preset / "speech_corpus.yaml").read_text())
    assert missing_voices(cfg["train_voices"] + cfg["test_voices"]) == []


def test_paper_preset_uses_a_hub_corpus():
    cfg = yaml.safe_load((CONFIG_ROOT / "paper" / "speech_corpus.yaml").read_text())
    hub = sc.SpeechCorpusConfig.from_dict(dict(cfg, seed=0)).hub_dataset
    assert hub["name"] and set(hub["splits"]) == set(sc.OUTPUT_SPLITS)


def test_hub_dataset_column_mapping(tmp_path):
    from datasets import Dataset

    def wav(seconds, sr):
        buf = io.BytesIO()
        sf.write(buf, 0.3 * np.sin(np.arange(int(seconds * sr)) / 7.0), sr, format="WAV")
        return {"bytes": buf.getvalue(), "path": None}

    raw = Dataset.from_dict(
        {
            "audio": [wav(1.0, 22050), wav(0.5, 16000), wav(2.0, 8000)],
            "text": ["one", "two", "three"],
            "speaker_id": [7, 8, 7],
            "id": ["a", "b", "c"],
        }
    )
    out = sc.hub_to_corpus(raw, split="train", dataset_name="some/corpus", cache_dir=str(tmp_path))
    assert out.features == sc.corpus_features()
    assert out["id"] == ["a", "b", "c"] and out["text"] == ["one", "two", "three"]
    assert out["voice"] == ["hub:some/corpus:7", "hub:some/corpus:8", "hub:some/corpus:7"]
    assert out["engine"] == ["human"] * 3
    np.testing.assert_allclose(out["duration"], [1.0, 0.5, 2.0], atol=1e-4)
    decoded = out[0]["audio"]
    assert decoded["sampling_rate"] == 16000 and abs(len(decoded["array"]) - 16000) <= 1  # resampled on decode
    held_out = sc.hub_to_corpus(
        raw,
        split="test_unseen_voices",
        dataset_name="some/corpus",
        exclude_voices={"hub:some/corpus:7"},
        cache_dir=str(tmp_path),
    )
    assert held_out["id"] == ["b"]
    with pytest.raises(ValueError, match="no column"):
        sc.hub_to_corpus(raw, split="train", dataset_name="x", text_column="sentence", cache_dir=str(tmp_path))


def test_cached_resampler_matches_the_shared_prepare_audio():
    from dataset_builders.speech_corpus.audio import _resample as resample
    from modeling_speechtext.audio import prepare_audio

    x = (np.random.default_rng(0).standard_normal(22050) * 0.1).astype(np.float32)
    for orig, new in [(22050, 16000), (22050, 15200), (32000, 16800), (16000, 16000)]:
        np.testing.assert_allclose(resample(x, orig, new, "t"), prepare_audio(x, orig, new, "t"), atol=1e-5)


# ------------------------------------------------------------------------- resume, without the real engines


class FakeEngine(te.TTSEngine):
    """A pure function of its inputs, like the real engines, and instant: a tone whose pitch hashes the text and
    voice and whose length follows the words and the rate."""

    name = "fake"
    calls = 0

    def available(self):
        return True

    def voices(self):
        return ["a", "b", "c", "d"]

    def synthesize(self, text, voice, rate=None, pitch=None):
        text = self._check_text(text)
        FakeEngine.calls += 1
        seconds = (0.4 + 0.08 * len(text.split())) / (rate or 1.0)
        f0 = 100 + zlib.crc32(f"{voice}|{text}".encode()) % 200
        t = np.arange(int(seconds * 16000)) / 16000
        return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 16000


FAKE_CONFIG = {
    "train_voices": ["fake:a", "fake:b", "fake:c"],
    "test_voices": ["fake:d"],
    "max_sentences": {"train": 10, "validation": 3, "test": 3},
    "voices_per_sentence": {"train": 2},
    "shard_size": 4,  # train: 20 jobs in 5 shards; validation and test_unseen_voices: 1 shard each
    "seed": 5,
    "keep_shards": True,
}


KILLED_MID_WRITE = """
import os, signal, sys
tests, sentences, out, victim = sys.argv[1:]
sys.path.insert(0, tests)
import pyarrow.parquet as pq
from datasets import load_from_disk
import test_speech_corpus as t
from dataset_builders import speech_corpus as sc, tts_engines as te

te.ENGINE_CLASSES["fake"] = t.FakeEngine
write_table = pq.ParquetWriter.write_table


def write_half_then_die(self, table, *args, **kwargs):
    if table.column("id")[0].as_py() == victim:
        write_table(self, table.slice(0, table.num_rows // 2))
        self.file_handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return write_table(self, table, *args, **kwargs)


pq.ParquetWriter.write_table = write_half_then_die
sc.build_speech_corpus(load_from_disk(sentences), t.FAKE_CONFIG, out)
"""
"""Run as `python -c KILLED_MID_WRITE <tests dir> <sentences> <output dir> <row id>`: a build that SIGKILLs itself
when half of the shard starting with that row is written (no Python cleanup runs, as with `kill -9`)."""


class Killed(BaseException):
    """The process dies here: not an Exception, so nothing on the way may catch it and tidy up."""


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setitem(te.ENGINE_CLASSES, "fake", FakeEngine)
    monkeypatch.setattr(tts_registry, "_ENGINE_CACHE", {})
    monkeypatch.setattr(FakeEngine, "calls", 0)
    return FakeEngine


def _shard_rows(out):
    import pyarrow.parquet as pq

    return {p.name: pq.read_table(p).num_rows for p in sorted((out / "shards").glob("*.parquet"))}


def test_a_crash_mid_shard_neither_loses_nor_duplicates_rows(fake_engine, sentences, tmp_path, monkeypatch):
    reference = sc.build_speech_corpus(sentences, FAKE_CONFIG, tmp_path / "reference")
    assert {s: len(d) for s, d in reference.items()} == {"train": 20, "validation": 3, "test_unseen_voices": 3}
    out = tmp_path / "crashy"

    # 1. killed in the middle of train shard 2 (its 2nd utterance): shards 0 and 1 are whole, nothing else exists
    doomed = reference["train"]["text"][9]
    synthesize = FakeEngine.synthesize

    def dies_on_doomed(self, text, voice, rate=None, pitch=None):
        if text == doomed:
            raise Killed
        return synthesize(self, text, voice, rate, pitch)

    monkeypatch.setattr(FakeEngine, "synthesize", dies_on_doomed)
    with pytest.raises(Killed):
        sc.build_speech_corpus(sentences, FAKE_CONFIG, out)
    assert _shard_rows(out) == {"train-00000-of-00005.parquet": 4, "train-00001-of-00005.parquet": 4}
    monkeypatch.setattr(FakeEngine, "synthesize", synthesize)

    # 2. SIGKILLed for real (a subprocess) while train shard 3 is half written: its rows are partly on disk
    sentences.save_to_disk(str(tmp_path / "sentences"))
    victim = reference["train"]["id"][12]  # the first row of train shard 3
    args = [os.path.dirname(__file__), str(tmp_path / "sentences"), str(out), victim]
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    half_written = out / "shards" / ".train-00003-of-00005.parquet.tmp"
    assert half_written.is_file() and half_written.stat().st_size > 0
    assert len(_shard_rows(out)) == 3  # shards 0-2; the half-written one is not a shard
    # and a leftover of a killed write elsewhere: a truncated hidden file
    (out / "shards" / ".validation-00000-of-00001.parquet.tmp").write_bytes(b"PAR1\x00\x01")

    # 3. the rerun makes exactly the missing shards and gives the uninterrupted corpus, row for row
    calls = FakeEngine.calls
    resumed = sc.build_speech_corpus(sentences, FAKE_CONFIG, out)
    assert FakeEngine.calls - calls == 4 + 4 + 3 + 3  # train shards 3 and 4, validation, test_unseen_voices
    for split in reference:
        assert resumed[split]["id"] == reference[split]["id"], split  # none lost, none twice, same order
        assert _audio_bytes(resumed[split]) == _audio_bytes(reference[split]), split
    assert _shard_rows(out) == _shard_rows(tmp_path / "reference")
    assert not list((out / "shards").glob(".*.tmp"))
    stats = json.loads((out / "stats.json").read_text())
    reference_stats = json.loads((tmp_path / "reference" / "stats.json").read_text())
    assert stats["synthesis"]["shards_resumed"] == 3 and stats["synthesis"]["shards"] == 7
    assert stats["synthesis"]["per_engine"]["fake"]["utterances"] == 26  # resumed shards' stats counted too
    assert stats["splits"] == reference_stats["splits"] and stats["fingerprint"] == reference_stats["fingerprint"]

    # a finished build is loaded, not synthesized again; a changed plan throws the stale shards away
    calls = FakeEngine.calls
    again = sc.build_speech_corpus(sentences, FAKE_CONFIG, out)
    assert FakeEngine.calls == calls and again["train"]["id"] == reference["train"]["id"]
    changed = sc.build_speech_corpus(sentences, dict(FAKE_CONFIG, seed=6), out)
    assert FakeEngine.calls - calls == 26 and sorted(changed["train"]["id"]) != sorted(reference["train"]["id"])
    assert sum(_shard_rows(out).values()) == 26


def test_dropped_utterances_are_counted_not_written(fake_engine, sentences, tmp_path):
    """An utterance outside [min_seconds, max_seconds] is dropped and reported with its reason, in stats.json."""
    dd = sc.build_speech_corpus(sentences, dict(FAKE_CONFIG, max_seconds=0.95), tmp_path / "out")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    dropped = {d["id"] for d in stats["dropped"]}
    kept = {i for ds in dd.values() for i in ds["id"]}
    assert dropped and kept and not dropped & kept
    assert len(dropped) + len(kept) == 26
    assert all("outside [0.25, 0.95]" in d["reason"] for d in stats["dropped"])
    assert max(d for ds in dd.values() for d in ds["duration"]) <= 0.95


def test_short_utterances_cover_every_word_then_phrases_and_stay_held_out():
    train = ["Mary moved to the bathroom.", "John went to the hallway.", "Mary went to the kitchen."]
    shorts = sc.short_utterances(train, 20, 3, seed=0)
    words = {w.lower() for t in train for w in t[:-1].split()}
    singles = [s for s in shorts if len(s.split()) == 1]
    assert {s[:-1].lower() for s in singles} == words and len(singles) == len(words)
    assert singles[0] in ("Mary.", "to.", "the.")  # most frequent first
    assert "Mary." in shorts and "mary." not in shorts  # a name keeps its casing
    phrases = [s for s in shorts if len(s.split()) > 1]
    assert phrases and all(2 <= len(p.split()) <= 3 and p[:-1] in " ".join(train) for p in phrases)
    assert len(shorts) == len(set(shorts)) <= 20
    cfg = sc.SpeechCorpusConfig.from_dict(dict(CONFIG, short_utterances={"train": 6, "validation": 4}))
    sel = sc.select_sentences({"train": train, "validation": ["Mary went to the garden."], "test": []}, cfg)
    train_short = [t for i, t in sel["train"] if "-short-" in i]
    val_short = [t for i, t in sel["validation"] if "-short-" in i]
    assert len(train_short) == 6 and len(sel["train"]) == 3 + 6
    assert val_short and not {t.lower() for t in val_short} & {t.lower() for t in train_short}
    with pytest.raises(ValueError, match="short_utterances"):
        sc.SpeechCorpusConfig.from_dict(dict(CONFIG, short_utterances={"dev": 3})).validate()

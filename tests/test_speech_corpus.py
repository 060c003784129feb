"""The speech corpus builder: output contract, held-out splits, determinism, crash + resume, presets, Hub mapping."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from dataset_builders import speech_corpus as sc
from dataset_builders.tts_engines import EspeakEngine, missing_voices, parse_voice, speaker_of
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
    assert stats["splits"]["train"]["utterances"] == 20 and stats["hours_total"] > 0
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
def test_crash_while_writing_a_shard_neither_loses_nor_duplicates_rows(reference, sentences, tmp_path, monkeypatch):
    """A crash half-way through writing a shard (some rows already in the file) and a `kill -9` leftover: the
    resumed corpus has every row exactly once, in order, byte for byte the uninterrupted build."""
    from dataset_builders import parquet_shards

    dd, _ = reference
    out = tmp_path / "crash_mid_write"
    real_write = parquet_shards._ShardFile.write
    state = {"shards": 0}

    def half_then_crash(self, rows):
        state["shards"] += 1
        if state["shards"] == 2:  # the second shard: half its rows reach the file, then the process "dies"
            real_write(self, rows[: len(rows) // 2])
            assert self.tmp.is_file()
            raise KeyboardInterrupt("simulated crash mid-shard")
        real_write(self, rows)

    monkeypatch.setattr(parquet_shards._ShardFile, "write", half_then_crash)
    cfg = dict(CONFIG, keep_shards=True)
    with pytest.raises(KeyboardInterrupt, match="mid-shard"):
        sc.build_speech_corpus(sentences, cfg, out)
    shard_dir = out / "shards"
    assert sorted(p.name for p in shard_dir.glob("*.parquet")) == ["train-00000-of-00004.parquet"]
    monkeypatch.setattr(parquet_shards._ShardFile, "write", real_write)
    # what a kill -9 leaves: a hidden, half-written shard with rows that must not reach the corpus
    (shard_dir / ".train-00001-of-00004.parquet.tmp").write_bytes(b"PAR1 half a shard")

    resumed = sc.build_speech_corpus(sentences, cfg, out)
    assert not list(shard_dir.glob(".*.tmp"))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["synthesis"]["shards_resumed"] == 1
    for split in dd:
        assert len(set(resumed[split]["id"])) == len(resumed[split])
        assert resumed[split]["id"] == dd[split]["id"]
        assert _audio_bytes(resumed[split]) == _audio_bytes(dd[split])
    assert stats["splits"] == json.loads((reference[1] / "stats.json").read_text())["splits"]


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
    assert metrics["train_utterances"] == 6 and metrics["test_unseen_voices_voices"] >= 1
    assert json.loads(json.dumps(metrics)) == metrics  # JSON-serialisable for stage.json
    from datasets import load_from_disk

    assert set(load_from_disk(str(tmp_path / "speech_corpus" / "dataset"))) == set(sc.OUTPUT_SPLITS)
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

"""Offline multi-voice speech corpus: sentences -> speech from several TTS engines -> a `datasets.DatasetDict`.

Splits (docs/STAGES.md): `train` (train sentences x training voices), `validation` (held-out sentences, the same
voices) and `test_unseen_voices` (held-out sentences x held-out voices no training voice shares a speaker with),
so the speech tokenizer is scored both on new words in known voices and on voices it never heard.
Columns: `id`, `audio` (Audio, 16 kHz), `text`, `voice` (a spec like `flite:awb`), `engine`, `duration`.

How the work is organised, and why:
- The job list (sentence, voice, rate, pitch, speed) is drawn once from `seed`; it is cut into fixed shards.
  Every engine is a pure function of its inputs (tts_engines.py), so a shard's bytes depend on nothing else:
  the corpus is identical whatever `num_proc` is and however many times the build crashed on the way.
- Each finished shard is one Parquet file written to a temp name and `os.replace`d into place: a crash leaves
  whole shards or none; a rerun skips the shards present, then assembles the DatasetDict from all of them.
- Speaker variety is the point (CALIBRATION.md: 3 voices do not generalise): many eSpeak accent x variant
  voices, flite's 4 recorded speakers, festival's voices, piper's neural voice, plus per-utterance speaking
  rate, pitch and speed (resampling: shifts pitch *and* formants, a cheap vocal-tract-length change).
- Slow engines are kept to a share with `engine_weights` (piper runs ~15x real time, eSpeak ~400x).

`hub_dataset` replaces synthesis by a real corpus from the Hub (LibriSpeech, MLS, ...) mapped to the same
columns: what the `paper` preset uses.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeling_speechtext.constants import SAMPLE_RATE

from .tts_engines import (
    ENGINE_CLASSES,
    SynthesisRequest,
    TTSError,
    get_engine,
    missing_voices,
    parse_voice,
    speaker_of,
)

logger = logging.getLogger(__name__)

OUTPUT_SPLITS = ("train", "validation", "test_unseen_voices")
SOURCE_SPLIT = {"train": "train", "validation": "validation", "test_unseen_voices": "test"}
"""Which sentence split feeds which output split (the text_corpus stage writes train/validation/test)."""

PLAN_VERSION = 1
"""Bump when the synthesis or post-processing changes the bytes, so old shards are not mixed with new ones."""

COLUMNS = ("id", "audio", "text", "voice", "engine", "duration")


def corpus_features():
    from datasets import Audio, Features, Value

    return Features(
        {
            "id": Value("string"),
            "audio": Audio(sampling_rate=SAMPLE_RATE),
            "text": Value("string"),
            "voice": Value("string"),
            "engine": Value("string"),
            "duration": Value("float32"),
        }
    )


@dataclass
class SpeechCorpusConfig:
    """What to synthesize. Every field has the same name in `recipes/configs/<preset>/speech_corpus.yaml`."""

    train_voices: list[str] = field(default_factory=list)
    """Voice specs (`engine:voice`) for train and validation."""
    test_voices: list[str] = field(default_factory=list)
    """Held-out voice specs for test_unseen_voices; none may share a speaker with a training voice."""
    max_sentences: dict[str, int | None] = field(default_factory=dict)
    """Per sentence split (train/validation/test): how many sentences to take (after shuffling); None = all."""
    voices_per_sentence: dict[str, int] = field(default_factory=dict)
    """Per output split: how many different voices read each sentence (default 1)."""
    engine_weights: dict[str, float] = field(default_factory=dict)
    """Relative chance of each engine's voices being drawn (default 1.0 per voice): keeps slow engines a share."""
    voice_weights: dict[str, float] = field(default_factory=dict)
    """Per-voice multiplier on top of `engine_weights`."""
    rate_range: tuple[float, float] = (0.9, 1.15)
    """Speaking-rate multiplier drawn uniformly per utterance (engine-native: words/min, duration stretch)."""
    pitch_range: tuple[float, float] = (0.9, 1.12)
    """F0 multiplier drawn per utterance, for engines that support it (espeak, flite)."""
    speed_range: tuple[float, float] = (1.0, 1.0)
    """Resampling speed factor drawn per utterance (tempo, pitch and formants together), any engine."""
    perturb_eval: bool = True
    """Also perturb validation/test_unseen_voices (else they are read at the engines' defaults)."""
    shard_size: int = 200
    num_proc: int = 1
    seed: int = 0
    peak_level: float = 0.9
    """Peak-normalise every utterance to this level (engines differ by >10 dB otherwise)."""
    trim_db: float = 40.0
    """Trim leading/trailing audio quieter than this many dB below the utterance's loudest 10 ms."""
    trim_pad_ms: float = 80.0
    """Silence kept at each end after trimming (a light trim: the tokenizer should still hear onsets)."""
    min_seconds: float = 0.25
    max_seconds: float = 30.0
    """Utterances outside [min, max] seconds are dropped and counted (engine glitches)."""
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Constructor options per engine, e.g. {piper: {noise_scale: 0.0}}."""
    require_all_voices: bool = False
    """False: voices this machine lacks are skipped with a warning. True: an error."""
    keep_shards: bool = False
    """Keep `shards/` after the DatasetDict is saved (they duplicate it on disk)."""
    sentences_path: str | None = None
    """A `save_to_disk` DatasetDict (train/validation/test, column `text`) or a text file (one sentence a line).
    Default (run_stage): `run_dir/text_corpus/sentences`."""
    hub_dataset: dict[str, Any] | None = None
    """Load real speech from the Hub instead of synthesizing: see `load_hub_corpus`."""

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> SpeechCorpusConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"speech_corpus config: unknown field(s) {unknown}; known fields are {sorted(names)}")
        cfg = cls(**dict(config))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("rate_range", "pitch_range", "speed_range"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not 0.3 <= lo <= hi <= 3.0:
                raise ValueError(f"speech_corpus config: {name}={[lo, hi]} must be 0.3 <= low <= high <= 3.0")
            setattr(self, name, (lo, hi))
        if self.shard_size < 1 or self.num_proc < 1:
            raise ValueError("speech_corpus config: shard_size and num_proc must be >= 1")
        for k, v in self.voices_per_sentence.items():
            if k not in OUTPUT_SPLITS or int(v) < 1:
                raise ValueError(
                    f"speech_corpus config: voices_per_sentence[{k!r}]={v}: splits are {OUTPUT_SPLITS}, values >= 1"
                )
        for k in self.max_sentences:
            if k not in SOURCE_SPLIT.values():
                raise ValueError(
                    f"speech_corpus config: max_sentences[{k!r}]: sentence splits are train/validation/test"
                )
        for spec in list(self.train_voices) + list(self.test_voices):
            parse_voice(spec)
        if self.hub_dataset is None and (not self.train_voices or not self.test_voices):
            raise ValueError("speech_corpus config: train_voices and test_voices must both be non-empty")
        shared = sorted(set(self.train_voices) & set(self.test_voices))
        if shared:
            raise ValueError(f"speech_corpus config: voices {shared} are in both train_voices and test_voices")
        train_speakers = {speaker_of(v): v for v in self.train_voices}
        leaks = [
            f"{v} (same speaker as {train_speakers[speaker_of(v)]})"
            for v in self.test_voices
            if speaker_of(v) in train_speakers
        ]
        if leaks:
            raise ValueError(f"speech_corpus config: held-out voices share a speaker with training voices: {leaks}")
        unknown_engines = sorted(set(self.engine_weights) - set(ENGINE_CLASSES))
        if unknown_engines:
            raise ValueError(f"speech_corpus config: engine_weights names unknown engines {unknown_engines}")
        for name in ("engine_weights", "voice_weights"):
            bad = {k: v for k, v in getattr(self, name).items() if not float(v) > 0}
            if bad:
                raise ValueError(f"speech_corpus config: {name} must be > 0, got {bad}")


# ---------------------------------------------------------------------------------------------- planning
def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")


def _norm_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _as_sentences(source: Any, split: str) -> list[tuple[str, str]]:
    """A split's sentences as (id, text): accepts a `datasets.Dataset` (`text`, optional `id`), or a list of
    strings / (id, text) pairs."""
    if source is None:
        return []
    if hasattr(source, "column_names"):
        if "text" not in source.column_names:
            raise ValueError(f"sentences split {split!r} has no 'text' column (columns: {source.column_names})")
        texts = source["text"]
        ids = source["id"] if "id" in source.column_names else [f"{split}-{i:07d}" for i in range(len(texts))]
        return [(str(i), t) for i, t in zip(ids, texts)]
    out = []
    for i, item in enumerate(source):
        if isinstance(item, str):
            out.append((f"{split}-{i:07d}", item))
        else:
            sid, text = item
            out.append((str(sid), text))
    return out


def select_sentences(
    sentences_by_split: Mapping[str, Any], config: SpeechCorpusConfig
) -> dict[str, list[tuple[str, str]]]:
    """Deterministic sentence choice per *sentence* split: drop empties and duplicates, drop held-out sentences that
    also occur in train (validation must be unseen text), shuffle with the seed, keep `max_sentences`."""
    out: dict[str, list[tuple[str, str]]] = {}
    seen_train: set[str] = set()
    for idx, split in enumerate(("train", "validation", "test")):
        rows = _as_sentences(sentences_by_split.get(split), split)
        unique, seen, seen_ids = [], set(), set()
        for sid, text in rows:
            key = _norm_text(text or "")
            if not key or key in seen or (split != "train" and key in seen_train):
                continue
            seen.add(key)
            if sid in seen_ids:  # ids become row ids: keep them unique even if the input's are not
                sid = f"{sid}-{len(unique)}"
            seen_ids.add(sid)
            unique.append((sid, re.sub(r"\s+", " ", text).strip()))
        if split == "train":
            seen_train = seen
        rng = np.random.default_rng([config.seed, 101, idx])
        order = rng.permutation(len(unique))
        limit = config.max_sentences.get(split)
        chosen = [unique[i] for i in order[: (len(unique) if limit is None else int(limit))]]
        if limit is not None and len(chosen) < int(limit):
            logger.warning("speech_corpus: %s has %d usable sentences, %d requested", split, len(chosen), limit)
        out[split] = chosen
    return out


def _voice_weights(voices: list[str], config: SpeechCorpusConfig) -> np.ndarray:
    w = np.array(
        [
            float(config.engine_weights.get(parse_voice(v).engine, 1.0)) * float(config.voice_weights.get(v, 1.0))
            for v in voices
        ]
    )
    return w / w.sum()


def plan_jobs(
    sentences: Mapping[str, list[tuple[str, str]]],
    train_voices: list[str],
    test_voices: list[str],
    config: SpeechCorpusConfig,
) -> dict[str, list[dict[str, Any]]]:
    """The whole job list, fixed by the seed: {output split: [{id, text, voice, rate, pitch, speed}, ...]}."""
    plan: dict[str, list[dict[str, Any]]] = {}
    for idx, split in enumerate(OUTPUT_SPLITS):
        voices = list(test_voices if split == "test_unseen_voices" else train_voices)
        weights = _voice_weights(voices, config)
        k = min(int(config.voices_per_sentence.get(split, 1)), len(voices))
        perturb = split == "train" or config.perturb_eval
        rng = np.random.default_rng([config.seed, 202, idx])
        jobs = []
        for sid, text in sentences.get(SOURCE_SPLIT[split], []):
            picks = rng.choice(len(voices), size=k, replace=False, p=weights)
            draws = rng.uniform(size=(k, 3))  # drawn even when unused, so perturb_eval does not shift the voices
            for j, v in enumerate(picks):
                voice = voices[int(v)]
                if perturb:
                    rate, pitch, speed = (
                        round(lo + (hi - lo) * float(u), 3)
                        for (lo, hi), u in zip((config.rate_range, config.pitch_range, config.speed_range), draws[j])
                    )
                else:
                    rate = pitch = speed = 1.0
                # ids read `<sentence id>-<voice>`, prefixed by the split unless the sentence id already says it
                prefix = "" if sid.startswith(f"{split}-") else f"{split}-"
                jobs.append(
                    {"id": f"{prefix}{_slug(sid)}-{_slug(voice)}", "text": text, "voice": voice,
                     "rate": rate, "pitch": pitch, "speed": speed}
                )  # fmt: skip
        plan[split] = jobs
    return plan


# ---------------------------------------------------------------------------------------------- audio
@functools.lru_cache(maxsize=256)
def _resampler(orig: int, new: int):
    """torchaudio's sinc `Resample` with its kernel built once per rate pair, with the filter settings of
    `modeling_speechtext.audio.prepare_audio` (so every stage resamples identically), which rebuilds the kernel on
    every call: more time than synthesizing a short eSpeak utterance. Speed perturbation gives only ~20 distinct
    rate pairs per engine rate."""
    import torchaudio

    try:
        from modeling_speechtext.audio import _RESAMPLE_KWARGS as kwargs
    except ImportError:
        kwargs = {}
    g = math.gcd(orig, new)
    return torchaudio.transforms.Resample(orig // g, new // g, **kwargs)


def _resample(audio: np.ndarray, orig_sr: int, target_sr: int, source: str) -> np.ndarray:
    import warnings

    import torch

    try:
        from modeling_speechtext.audio import prepare_audio
    except ImportError:  # the shared audio checks are optional here
        x = np.ascontiguousarray(audio, dtype=np.float32)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # near-silence/clipping are judged after normalisation
            x = prepare_audio(audio, orig_sr, orig_sr, source)  # checks (dtype, NaN, empty), no resampling
    if orig_sr == target_sr:
        return x
    with torch.no_grad():
        return _resampler(orig_sr, target_sr)(torch.from_numpy(x)[None])[0].numpy()


def trim_silence(audio: np.ndarray, sr: int, trim_db: float, pad_ms: float) -> np.ndarray:
    """Cut leading/trailing stretches quieter than `trim_db` below the loudest 10 ms frame and leave exactly
    `pad_ms` at each end (the engine's own quiet samples where it has them, zeros where it has none: eSpeak
    starts speaking at sample 0, and a model should not learn to tell engines apart by their lead-in)."""
    frame = max(1, sr // 100)
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    peak = rms.max()
    if peak <= 0:
        return audio[:0]
    loud = np.nonzero(rms >= peak * 10 ** (-trim_db / 20))[0]
    pad = int(sr * pad_ms / 1000)
    first, last = loud[0] * frame, min(len(audio), (loud[-1] + 1) * frame)
    start, end = max(0, first - pad), min(len(audio), last + pad)
    head = np.zeros(pad - (first - start), dtype=audio.dtype)
    tail = np.zeros(pad - (end - last), dtype=audio.dtype)
    return np.concatenate([head, audio[start:end], tail])


def postprocess(
    audio: np.ndarray, sr: int, speed: float, config: Mapping[str, Any], source: str = "<tts>"
) -> np.ndarray:
    """Engine output -> corpus audio: trim, resample to 16 kHz (with the speed factor), peak-normalise."""
    audio = trim_silence(np.asarray(audio, dtype=np.float32), sr, config["trim_db"], config["trim_pad_ms"])
    if audio.size == 0:
        return audio
    # Speed s: resample to 16000/s Hz and call it 16 kHz. Rounded to 100 Hz so the sinc kernel stays small.
    target = SAMPLE_RATE if speed == 1.0 else int(round(SAMPLE_RATE / speed / 100.0) * 100)
    out = _resample(audio, sr, target, source)
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 0:
        out = out * (config["peak_level"] / peak)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _encode_flac(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- shards
_STATS_KEY = b"speechtext_shard_stats"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def synthesize_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Synthesize one shard's jobs and write them atomically as Parquet; returns the shard's stats.

    Jobs are grouped by voice so festival serves a whole group from one process; rows keep the job order.
    A `TTSError` (one bad utterance) drops that utterance and is counted; any other exception fails the shard
    (and the build), leaving no file, so the rerun redoes exactly this shard.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    jobs, post = task["jobs"], task["post"]
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        by_voice[job["voice"]].append(i)
    results: list[tuple[np.ndarray, int] | TTSError | None] = [None] * len(jobs)
    engines: dict[str, dict[str, float]] = defaultdict(
        lambda: {"utterances": 0, "audio_seconds": 0.0, "synth_seconds": 0.0}
    )
    for voice, idxs in by_voice.items():
        vs = parse_voice(voice)
        engine = get_engine(vs.engine, **task["engine_options"].get(vs.engine, {}))
        requests = [
            SynthesisRequest(
                jobs[i]["text"], vs.voice, jobs[i]["rate"], jobs[i]["pitch"] if engine.supports_pitch else None
            )
            for i in idxs
        ]
        t0 = time.perf_counter()
        out = engine.synthesize_batch(requests)
        engines[vs.engine]["synth_seconds"] += time.perf_counter() - t0
        for i, r in zip(idxs, out):
            results[i] = r

    rows: dict[str, list] = {c: [] for c in COLUMNS}
    dropped: list[dict[str, str]] = []
    for job, res in zip(jobs, results):
        if isinstance(res, TTSError) or res is None:
            dropped.append({"id": job["id"], "reason": str(res)})
            continue
        audio = postprocess(res[0], res[1], job["speed"], post, source=job["id"])
        duration = len(audio) / SAMPLE_RATE
        if not post["min_seconds"] <= duration <= post["max_seconds"]:
            dropped.append(
                {
                    "id": job["id"],
                    "reason": f"duration {duration:.2f} s outside [{post['min_seconds']}, {post['max_seconds']}]",
                }
            )
            continue
        engine_name = parse_voice(job["voice"]).engine
        rows["id"].append(job["id"])
        rows["audio"].append({"bytes": _encode_flac(audio), "path": None})
        rows["text"].append(job["text"])
        rows["voice"].append(job["voice"])
        rows["engine"].append(engine_name)
        rows["duration"].append(duration)
        engines[engine_name]["utterances"] += 1
        engines[engine_name]["audio_seconds"] += duration
    for d in dropped:
        logger.warning("speech_corpus: dropped %s: %s", d["id"], d["reason"])
    stats = {
        "shard": Path(task["path"]).name,
        "utterances": len(rows["id"]),
        "audio_seconds": float(sum(rows["duration"])),
        "wall_seconds": time.perf_counter() - start,
        "engines": {k: dict(v) for k, v in engines.items()},
        "dropped": dropped,
    }
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("text", pa.string()),
            ("voice", pa.string()),
            ("engine", pa.string()),
            ("duration", pa.float32()),
        ],
        metadata={_STATS_KEY: json.dumps(stats).encode()},
    )
    table = pa.table(rows, schema=schema)
    path = Path(task["path"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # atomic: the shard exists whole or not at all
    return stats


def _shard_stats(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[_STATS_KEY]) if _STATS_KEY in meta else {}


def _run_shards(tasks: list[dict[str, Any]], num_proc: int, done: int, total: int) -> tuple[list[dict], float]:
    from tqdm.auto import tqdm

    results: list[dict] = []
    start = time.perf_counter()
    audio = 0.0
    bar = tqdm(total=total, initial=done, desc="speech_corpus shards", unit="shard")
    try:

        def _tick(stats):
            nonlocal audio
            results.append(stats)
            audio += stats["audio_seconds"]
            bar.update(1)
            bar.set_postfix(
                audio_h=f"{audio / 3600:.2f}", x_rt=f"{audio / max(time.perf_counter() - start, 1e-9):.0f}"
            )

        if num_proc <= 1 or len(tasks) <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small resampling convolutions: extra threads only contend (10x slower)
            try:
                for task in tasks:  # in-process: no pool start-up, and monkeypatching works (tests)
                    _tick(synthesize_shard(task))
            finally:
                torch.set_num_threads(threads)
        else:
            import multiprocessing

            # spawn, not fork: the parent may hold torch/OpenMP threads, which forked children inherit broken.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(num_proc, len(tasks)), initializer=_worker_init) as pool:
                for stats in pool.imap_unordered(synthesize_shard, tasks):
                    _tick(stats)
    finally:
        bar.close()
    return results, time.perf_counter() - start


def _fingerprint(plan: Mapping[str, list], config: SpeechCorpusConfig, post: Mapping[str, Any]) -> str:
    blob = json.dumps(
        {
            "version": PLAN_VERSION,
            "plan": plan,
            "post": post,
            "shard_size": config.shard_size,
            "engine_options": config.engine_options,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_speech_corpus(
    sentences_by_split: Mapping[str, Any], config: SpeechCorpusConfig | Mapping[str, Any], output_dir: str | Path
):
    """Synthesize the corpus into `output_dir` (`dataset/`, `stats.json`; `shards/` while building) and return
    the `DatasetDict`. `sentences_by_split` maps train/validation/test to Datasets or lists of sentences.
    Resumes from finished shards; a changed plan (seed, voices, sizes, ...) discards stale shards."""
    from datasets import DatasetDict

    if not isinstance(config, SpeechCorpusConfig):
        config = SpeechCorpusConfig.from_dict(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    train_voices, test_voices = _usable_voices(config)
    sentences = select_sentences(sentences_by_split, config)
    plan = plan_jobs(sentences, train_voices, test_voices, config)
    post = {k: getattr(config, k) for k in ("peak_level", "trim_db", "trim_pad_ms", "min_seconds", "max_seconds")}
    fingerprint = _fingerprint(plan, config, post)

    dataset_dir, stats_path = output_dir / "dataset", output_dir / "stats.json"
    if dataset_dir.is_dir() and stats_path.is_file():
        previous = json.loads(stats_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            logger.info("speech_corpus: %s is complete for this plan, loading it", dataset_dir)
            from datasets import load_from_disk

            return load_from_disk(str(dataset_dir))

    shard_dir = output_dir / "shards"
    shard_dir.mkdir(exist_ok=True)
    plan_path = shard_dir / "plan.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()).get("fingerprint") != fingerprint:
        logger.warning("speech_corpus: the plan changed since the last run; discarding old shards in %s", shard_dir)
        for p in shard_dir.glob("*.parquet"):
            p.unlink()
    for p in shard_dir.glob(".*.tmp"):  # half-written shards of a crashed run
        p.unlink()

    tasks, shard_paths = [], {split: [] for split in OUTPUT_SPLITS}
    for split, jobs in plan.items():
        n = math.ceil(len(jobs) / config.shard_size)
        for i in range(n):
            path = shard_dir / f"{split}-{i:05d}-of-{n:05d}.parquet"
            shard_paths[split].append(path)
            chunk = jobs[i * config.shard_size : (i + 1) * config.shard_size]
            tasks.append({"path": str(path), "jobs": chunk, "post": post, "engine_options": config.engine_options})
    tmp_plan = plan_path.with_suffix(".json.tmp")
    tmp_plan.write_text(
        json.dumps(
            {"fingerprint": fingerprint, "shards": {s: [p.name for p in ps] for s, ps in shard_paths.items()}},
            indent=1,
        )
    )
    os.replace(tmp_plan, plan_path)

    pending = [t for t in tasks if not Path(t["path"]).is_file()]
    resumed = len(tasks) - len(pending)
    if resumed:
        logger.info("speech_corpus: resuming, %d of %d shards already done", resumed, len(tasks))
    logger.info(
        "speech_corpus: %s utterances in %d shards, %d train voices, %d held-out voices, num_proc=%d",
        {s: len(j) for s, j in plan.items()}, len(tasks), len(train_voices), len(test_voices), config.num_proc,
    )  # fmt: skip
    run_stats, wall = _run_shards(pending, config.num_proc, resumed, len(tasks))

    features = corpus_features()
    splits = {split: _assemble_split(paths, features) for split, paths in shard_paths.items()}
    dd = DatasetDict(splits)
    tmp_dir = output_dir / "dataset.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    dd.save_to_disk(str(tmp_dir))
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    os.replace(tmp_dir, dataset_dir)

    all_shard_stats = [_shard_stats(p) for ps in shard_paths.values() for p in ps]
    stats = _corpus_stats(dd, all_shard_stats, run_stats, wall, resumed, len(tasks), train_voices, test_voices, config)
    stats["fingerprint"] = fingerprint
    tmp_stats = stats_path.with_suffix(".json.tmp")
    tmp_stats.write_text(json.dumps(stats, indent=2, sort_keys=True))
    os.replace(tmp_stats, stats_path)
    if not config.keep_shards:
        shutil.rmtree(shard_dir)
    from datasets import load_from_disk

    return load_from_disk(str(dataset_dir))  # memory-mapped from its final place, not from the shards


def _assemble_split(paths: list[Path], features):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    tables = [pq.read_table(p).replace_schema_metadata(None) for p in paths]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return Dataset.from_dict({c: [] for c in COLUMNS}, features=features)
    table = pa.concat_tables(tables)
    return Dataset(table.cast(features.arrow_schema))


def _usable_voices(config: SpeechCorpusConfig) -> tuple[list[str], list[str]]:
    out = []
    for name in ("train_voices", "test_voices"):
        voices = list(dict.fromkeys(getattr(config, name)))
        missing = missing_voices(voices, config.engine_options)
        if missing:
            if config.require_all_voices:
                raise ValueError(
                    f"speech_corpus: {name} not available on this machine: {missing} (bash scripts/setup.sh)"
                )
            logger.warning("speech_corpus: skipping %s not available on this machine: %s", name, missing)
        voices = [v for v in voices if v not in missing]
        if not voices:
            raise ValueError(
                f"speech_corpus: none of the {name} is available here; install the TTS engines (scripts/setup.sh)"
            )
        out.append(voices)
    return out[0], out[1]


def _corpus_stats(dd, shard_stats, run_stats, wall, resumed, n_shards, train_voices, test_voices, config) -> dict:
    splits = {}
    for split, ds in dd.items():
        durations = np.asarray(ds["duration"], dtype=np.float64)
        voices, engines = ds["voice"], ds["engine"]
        splits[split] = {
            "utterances": len(ds),
            "hours": round(float(durations.sum()) / 3600, 4),
            "mean_seconds": round(float(durations.mean()), 3) if len(ds) else 0.0,
            "num_voices": len(set(voices)),
            "voices": sorted(set(voices)),
            "engines": {e: int(c) for e, c in zip(*np.unique(np.asarray(engines, dtype=object), return_counts=True))}
            if len(ds)
            else {},
        }
    per_engine: dict[str, dict[str, float]] = defaultdict(
        lambda: {"utterances": 0, "audio_seconds": 0.0, "synth_seconds": 0.0}
    )
    for s in shard_stats:
        for e, v in s.get("engines", {}).items():
            for k in per_engine[e]:
                per_engine[e][k] += v.get(k, 0)
    engine_speed = {
        e: {
            "utterances": int(v["utterances"]),
            "audio_hours": round(v["audio_seconds"] / 3600, 4),
            "x_realtime": round(v["audio_seconds"] / v["synth_seconds"], 1) if v["synth_seconds"] > 0 else None,
        }
        for e, v in sorted(per_engine.items())
    }
    run_audio = sum(s["audio_seconds"] for s in run_stats)
    return {
        "splits": splits,
        "hours_total": round(sum(s["hours"] for s in splits.values()), 4),
        "utterances_total": sum(s["utterances"] for s in splits.values()),
        "engines": sorted(per_engine),
        "train_voices": train_voices,
        "test_voices": test_voices,
        "dropped": [d for s in shard_stats for d in s.get("dropped", [])],
        "synthesis": {
            "num_proc": config.num_proc,
            "shards": n_shards,
            "shards_resumed": resumed,
            "wall_seconds": round(wall, 2),
            "audio_seconds": round(run_audio, 1),
            "x_realtime_wall": round(run_audio / wall, 1) if wall > 0 and run_audio else None,
            "per_engine": engine_speed,
        },
    }


# ---------------------------------------------------------------------------------------------- Hub corpora
def hub_to_corpus(
    ds,
    *,
    split: str,
    dataset_name: str,
    text_column: str = "text",
    speaker_column: str | None = "speaker_id",
    id_column: str | None = "id",
    audio_column: str = "audio",
    engine: str = "human",
    exclude_voices: set[str] | None = None,
    max_utterances: int | None = None,
    cache_dir: str | None = None,
):
    """Map a Hub speech dataset (Dataset or streaming IterableDataset) to this corpus's columns.

    Audio is kept in its original encoding and declared `Audio(sampling_rate=16000)`, so `datasets` resamples
    on decode (re-encoding hours of FLAC here would buy nothing). `voice` = `hub:<dataset>:<speaker>`;
    `exclude_voices` drops rows of those voices (train speakers, for the unseen-voice split).
    """
    import soundfile as sf
    from datasets import Audio, Dataset

    for col in (audio_column, text_column):
        if col not in (ds.column_names or [col]):
            raise ValueError(
                f"hub dataset {dataset_name!r} split {split!r} has no column {col!r} (columns: {ds.column_names})"
            )
    ds = ds.cast_column(audio_column, Audio(decode=False))
    prefix = f"hub:{dataset_name}"
    features = corpus_features()

    def rows():
        n = 0
        for i, ex in enumerate(ds):
            if max_utterances is not None and n >= max_utterances:
                return
            speaker = ex.get(speaker_column) if speaker_column else None
            voice = f"{prefix}:{speaker}" if speaker is not None else prefix
            if exclude_voices and voice in exclude_voices:
                continue
            audio = ex[audio_column]
            data = audio.get("bytes")
            info = sf.info(io.BytesIO(data)) if data else sf.info(audio["path"])
            ident = ex.get(id_column) if id_column else None
            yield {
                "id": str(ident) if ident is not None else f"{split}-{i:08d}",
                "audio": {"bytes": data, "path": audio.get("path")},
                "text": ex[text_column],
                "voice": voice,
                "engine": engine,
                "duration": float(info.frames / info.samplerate),
            }
            n += 1

    # from_generator writes Arrow to disk as it goes: a Hub corpus need not fit in memory.
    return Dataset.from_generator(rows, features=features, cache_dir=cache_dir)


def load_hub_corpus(hub: Mapping[str, Any], output_dir: str | Path):
    """`hub_dataset` config -> DatasetDict with the corpus columns, test_unseen_voices minus training speakers.

    Keys: `name` (e.g. `openslr/librispeech_asr`), `config` (optional), `splits` ({output split: Hub split}),
    `text_column`, `speaker_column`, `id_column`, `streaming` (default true), `max_utterances` ({split: n}).
    """
    from datasets import DatasetDict, load_dataset

    name = hub.get("name")
    if not name:
        raise ValueError("speech_corpus config: hub_dataset.name is required (e.g. openslr/librispeech_asr)")
    split_map = hub.get("splits") or {}
    missing = [s for s in OUTPUT_SPLITS if s not in split_map]
    if missing:
        raise ValueError(f"speech_corpus config: hub_dataset.splits must map {list(OUTPUT_SPLITS)}; missing {missing}")
    out, train_voices = {}, set()
    for split in OUTPUT_SPLITS:
        raw = load_dataset(name, hub.get("config"), split=split_map[split], streaming=bool(hub.get("streaming", True)))
        out[split] = hub_to_corpus(
            raw,
            split=split,
            dataset_name=name,
            text_column=hub.get("text_column", "text"),
            speaker_column=hub.get("speaker_column", "speaker_id"),
            id_column=hub.get("id_column", "id"),
            engine=hub.get("engine", "human"),
            exclude_voices=train_voices if split == "test_unseen_voices" else None,
            max_utterances=(hub.get("max_utterances") or {}).get(split),
            cache_dir=str(Path(output_dir) / "cache"),
        )
        if split == "train":
            train_voices = set(out[split]["voice"])
    return DatasetDict(out)


# ---------------------------------------------------------------------------------------------- stage
def read_sentences(path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Sentences from a `save_to_disk` DatasetDict (train/validation/test) or a text file (one a line; 5% each
    to validation and test, drawn with the seed)."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        dd = load_from_disk(str(path))
        if not hasattr(dd, "keys"):
            raise ValueError(f"{path}: expected a DatasetDict with splits train/validation/test, got a single Dataset")
        missing = [s for s in ("train", "validation", "test") if s not in dd]
        if missing:
            raise ValueError(f"{path}: sentences DatasetDict lacks split(s) {missing} (has {list(dd)})")
        return {s: dd[s] for s in ("train", "validation", "test")}
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        order = np.random.default_rng([seed, 303]).permutation(len(lines))
        n_eval = max(1, len(lines) // 20)
        pick = lambda idx: [(f"line-{i:07d}", lines[i]) for i in sorted(idx)]  # noqa: E731
        return {
            "validation": pick(order[:n_eval]),
            "test": pick(order[n_eval : 2 * n_eval]),
            "train": pick(order[2 * n_eval :]),
        }
    raise FileNotFoundError(f"{path}: no sentences here (run the text_corpus stage first, or set sentences_path)")


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry: sentences from `run_dir/text_corpus/sentences` (or `sentences_path`) -> `output_dir/dataset`."""
    output_dir, run_dir = Path(output_dir), Path(run_dir)
    cfg = SpeechCorpusConfig.from_dict(config)
    start = time.perf_counter()
    if cfg.hub_dataset:
        dd = load_hub_corpus(cfg.hub_dataset, output_dir)
        dd.save_to_disk(str(output_dir / "dataset"))
        shutil.rmtree(output_dir / "cache", ignore_errors=True)
        stats = {
            "splits": {
                s: {
                    "utterances": len(d),
                    "hours": round(float(np.sum(d["duration"])) / 3600, 4),
                    "num_voices": len(set(d["voice"])),
                }
                for s, d in dd.items()
            },
            "engines": sorted({e for d in dd.values() for e in set(d["engine"])}),
            "hub_dataset": cfg.hub_dataset["name"],
        }
        (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    else:
        if cfg.sentences_path:
            from modeling_speechtext.paths import resolve_data_path

            source = resolve_data_path(cfg.sentences_path)
        else:
            source = run_dir / "text_corpus" / "sentences"
        dd = build_speech_corpus(read_sentences(source, cfg.seed), cfg, output_dir)
        stats = json.loads((output_dir / "stats.json").read_text())
    splits = stats["splits"]
    metrics = {
        "seconds": round(time.perf_counter() - start, 1),
        "hours_total": round(sum(s["hours"] for s in splits.values()), 3),
        "engines": stats["engines"],
    }
    for split, s in splits.items():
        metrics[f"{split}_utterances"] = s["utterances"]
        metrics[f"{split}_hours"] = round(s["hours"], 3)
        metrics[f"{split}_voices"] = s["num_voices"]
    synth = stats.get("synthesis")
    if synth:
        metrics["x_realtime"] = synth["x_realtime_wall"]
        metrics["x_realtime_per_engine"] = {e: v["x_realtime"] for e, v in synth["per_engine"].items()}
    return metrics


__all__ = [
    "OUTPUT_SPLITS",
    "SpeechCorpusConfig",
    "build_speech_corpus",
    "corpus_features",
    "hub_to_corpus",
    "load_hub_corpus",
    "plan_jobs",
    "postprocess",
    "read_sentences",
    "run_stage",
    "select_sentences",
    "synthesize_shard",
    "trim_silence",
]

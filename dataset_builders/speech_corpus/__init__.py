"""Offline multi-voice speech corpus: sentences -> speech from several TTS engines -> a `datasets.DatasetDict`.

Splits (docs/STAGES.md): `train` (train sentences x training voices), `validation` (held-out sentences, the same
voices) and `test_unseen_voices` (held-out sentences x held-out voices no training voice shares a speaker with),
so the speech tokenizer is scored both on new words in known voices and on voices it never heard.
Columns: `id`, `audio` (Audio, 16 kHz), `text`, `voice` (a spec like `flite:awb`), `engine`, `duration`.

How the work is organised, and why:
- The job list (sentence, voice, rate, pitch, speed) is drawn once from `seed`; it is cut into fixed shards.
  Every engine is a pure function of its inputs (`dataset_builders.tts_engines`), so a shard's bytes depend on
  nothing else: the corpus is identical whatever `num_proc` is and however many times the build crashed on the way.
- Each finished shard is one Parquet file written by the one resumable writer (`dataset_builders.parquet_shards`):
  a crash leaves whole shards or none; a rerun skips the shards present, then assembles the DatasetDict from all.
- Speaker variety is the point (CALIBRATION.md: 3 voices do not generalise): many eSpeak accent x variant
  voices, flite's 4 recorded speakers, festival's voices, piper's neural voice, plus per-utterance speaking
  rate, pitch and speed (resampling: shifts pitch *and* formants, a cheap vocal-tract-length change).
- Slow engines are kept to a share with `engine_weights` (piper runs ~15x real time, eSpeak ~400x).

`hub_dataset` replaces synthesis by a real corpus from the Hub (LibriSpeech, MLS, ...) mapped to the same
columns: what the `paper` preset uses.

Rooms: `config` (what to build, the output contract), `selection` (which sentences), `voices` (usable voices and
the seeded job plan), `audio` (trim, resample, normalise, FLAC), `shards` (synthesis through the one resumable
Parquet writer, `dataset_builders.parquet_shards`), `resume` (plan fingerprint, stale and half-written shards),
`stats`, `hub` (real corpora), `build` (the whole build) and `stage` (the pipeline's entry point).
"""

from .audio import postprocess, trim_silence
from .build import build_speech_corpus
from .config import OUTPUT_SPLITS, SpeechCorpusConfig, corpus_features
from .hub import hub_to_corpus, load_hub_corpus
from .selection import read_sentences, select_sentences, short_utterances
from .shards import synthesize_shard
from .stage import run_stage
from .voices import plan_jobs

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
    "short_utterances",
    "synthesize_shard",
    "trim_silence",
]

"""What a speech corpus build is asked for (`SpeechCorpusConfig`) and the contract of what it writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modeling_speechtext.constants import SAMPLE_RATE

from ..stage_config import config_from_dict
from ..tts_engines import ENGINE_CLASSES, parse_voice, speaker_of

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
    short_utterances: dict[str, int] = field(default_factory=dict)
    """Per sentence split: how many extra one- to three-word utterances to speak ("bathroom.", "the kitchen."),
    drawn from that split's own sentences: every word of the split first (most frequent first), then word
    pairs and triples. Sentences alone never teach the text-to-token model such short inputs, and it runs away
    on them (bAbI answers are single words). 0 / missing: none."""
    short_utterance_max_words: int = 3
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
        return config_from_dict(cls, config, "speech_corpus")

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
        for name in ("max_sentences", "short_utterances"):
            for k in getattr(self, name):
                if k not in SOURCE_SPLIT.values():
                    raise ValueError(
                        f"speech_corpus config: {name}[{k!r}]: sentence splits are train/validation/test"
                    )
        bad_short = {k: v for k, v in self.short_utterances.items() if int(v) < 0}
        if bad_short or self.short_utterance_max_words < 1:
            raise ValueError(
                f"speech_corpus config: short_utterances must be >= 0 (got {bad_short}) and "
                f"short_utterance_max_words >= 1 (got {self.short_utterance_max_words})"
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


__all__ = ["OUTPUT_SPLITS", "SOURCE_SPLIT", "PLAN_VERSION", "COLUMNS", "corpus_features", "SpeechCorpusConfig"]

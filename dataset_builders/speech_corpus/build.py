"""`build_speech_corpus`: sentences -> job plan -> shards (resumed where a crashed run left them) -> DatasetDict."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import SpeechCorpusConfig, corpus_features
from .resume import SHARD_FOLDER, finished_corpus, plan_fingerprint, prepare_shards, write_json_atomic
from .selection import select_sentences
from .shards import assemble_split, run_shards
from .stats import corpus_stats
from .voices import plan_jobs, usable_voices

logger = logging.getLogger(__name__)

POST_KEYS = ("peak_level", "trim_db", "trim_pad_ms", "min_seconds", "max_seconds")
"""The config fields the post-processing reads (part of the fingerprint: they change the bytes)."""


def build_speech_corpus(
    sentences_by_split: Mapping[str, Any], config: SpeechCorpusConfig | Mapping[str, Any], output_dir: str | Path
):
    """Synthesize the corpus into `output_dir` (`dataset/`, `stats.json`; `shards/` while building) and return
    the `DatasetDict`. `sentences_by_split` maps train/validation/test to Datasets or lists of sentences.
    Resumes from finished shards; a changed plan (seed, voices, sizes, ...) discards stale shards."""
    from datasets import DatasetDict, load_from_disk

    if not isinstance(config, SpeechCorpusConfig):
        config = SpeechCorpusConfig.from_dict(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    train_voices, test_voices = usable_voices(config)
    sentences = select_sentences(sentences_by_split, config)
    plan = plan_jobs(sentences, train_voices, test_voices, config)
    post = {k: getattr(config, k) for k in POST_KEYS}
    fingerprint = plan_fingerprint(plan, config, post)
    finished = finished_corpus(output_dir, fingerprint)
    if finished is not None:
        return finished

    writers, tasks = prepare_shards(plan, config, post, output_dir, fingerprint)
    pending = [t for t in tasks if not t["writer"].done(t["shard"])]
    resumed = len(tasks) - len(pending)
    if resumed:
        logger.info("speech_corpus: resuming, %d of %d shards already done", resumed, len(tasks))
    logger.info(
        "speech_corpus: %s utterances in %d shards, %d train voices, %d held-out voices, num_proc=%d",
        {s: len(j) for s, j in plan.items()}, len(tasks), len(train_voices), len(test_voices), config.num_proc,
    )  # fmt: skip
    run_stats, wall = run_shards(pending, config.num_proc, resumed, len(tasks))

    features = corpus_features()
    dd = DatasetDict({split: assemble_split(writer, features) for split, writer in writers.items()})
    dataset_dir, tmp_dir = output_dir / "dataset", output_dir / "dataset.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    dd.save_to_disk(str(tmp_dir))
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    os.replace(tmp_dir, dataset_dir)

    all_shard_stats = [s for writer in writers.values() for s in writer.read_stats()]
    stats = corpus_stats(dd, all_shard_stats, run_stats, wall, resumed, len(tasks), train_voices, test_voices, config)
    stats["fingerprint"] = fingerprint
    write_json_atomic(output_dir / "stats.json", stats, indent=2, sort_keys=True)
    if not config.keep_shards:
        shutil.rmtree(output_dir / SHARD_FOLDER)
    return load_from_disk(str(dataset_dir))  # memory-mapped from its final place, not from the shards


__all__ = ["build_speech_corpus"]

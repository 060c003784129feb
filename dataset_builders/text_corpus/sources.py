"""Corpus assembly, one function per source (tiny world, files, Hub): documents, sentences and qa rows per split,
with held-out material kept out of train."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeling_speechtext.paths import resolve_data_path
from modeling_speechtext.text_normalization import clean_text, normalize_text, words

from .augment import renamed_copies
from .babi import (
    BabiStory,
    find_babi_file,
    parse_babi_file,
    render_babi_answer,
    render_babi_sentence,
    render_babi_story,
    render_qa_line,
    templated_sentences,
)
from .config import SPLITS, TextCorpusConfig, assign_split, short_hash
from .open_text import chunk_items, clean_sentence, read_text_items, split_sentences


@dataclass
class CorpusParts:
    """What a source yields, rows per split, before anything is written: `build` turns it into DatasetDicts and
    stats. `qa` only for the tiny world; `extra_stats` is what the source alone knows (formats, record counts)."""

    documents: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    sentences: dict[str, list[dict[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    qa: dict[str, list[dict[str, Any]]] | None = None
    extra_stats: dict[str, Any] = field(default_factory=dict)


def _add_babi_story(corpus: CorpusParts, split: str, doc_id: str, story: BabiStory) -> None:
    """One story as a document of `split` and one qa row per question."""
    corpus.documents[split].append({"id": doc_id, "text": render_babi_story(story), "source": f"babi/qa{story.task}"})
    for q in story.questions:
        corpus.qa[split].append(
            {
                "id": f"{doc_id}-{q.line_id:02d}",
                "task": story.task,
                "story": "\n".join(render_babi_sentence(s) for s in q.context),
                "question": render_babi_sentence(q.question, "?"),
                "answer": render_babi_answer(q.answer),
            }
        )


def build_tiny_world(cfg: TextCorpusConfig) -> CorpusParts:
    """bAbI stories as documents and qa rows (bAbI's train/test, a seeded validation slice of train), and a
    sentence pool drawn from train stories only plus templated sentences, split by a seeded hash of each sentence."""
    babi_dir = resolve_data_path(cfg.babi_dir)
    corpus = CorpusParts(qa={s: [] for s in SPLITS})
    train_stories: list[BabiStory] = []
    n_renamed = 0
    for task in sorted(set(cfg.tasks)):
        by_origin = {}
        for origin in ("train", "test"):
            stories = parse_babi_file(find_babi_file(babi_dir, task, origin), task, origin)
            by_origin[origin] = stories[: cfg.max_stories] if cfg.max_stories else stories
        train = by_origin["train"]
        n_val = round(len(train) * cfg.validation_fraction)
        if cfg.validation_fraction > 0 and n_val == 0 and len(train) >= 2:
            n_val = 1
        val_ids = set(random.Random(f"validation-{cfg.seed}-{task}").sample(range(len(train)), n_val))
        assigned = [("validation" if s.index in val_ids else "train", s) for s in train]
        assigned += [("test", s) for s in by_origin["test"]]
        for split, story in assigned:
            _add_babi_story(corpus, split, f"qa{task}-{story.origin}-{story.index:04d}", story)
            if split == "train":
                train_stories.append(story)
        # Renamed copies go to train only, after the real stories, with their qa rows; they are not sources of the
        # sentence pool (their sentences are bAbI's patterns with other fillers, as the templated ones are).
        if task in cfg.augment_tasks and cfg.augment_copies > 0:
            real_train = [story for split, story in assigned if split == "train"]
            for k, copy in renamed_copies(real_train, cfg.augment_copies, cfg.seed):
                _add_babi_story(corpus, "train", f"qa{task}-{copy.origin}-{copy.index:04d}-rename{k:02d}", copy)
                n_renamed += 1

    # The sentence pool: train stories only, so nothing of validation/test stories leaks into sentences.
    pool: dict[str, tuple[str, str]] = {}  # scoring form -> (text, source)

    def add(text: str, source: str) -> None:
        n = len(words(text))
        if cfg.min_sentence_words <= n <= cfg.max_sentence_words:
            pool.setdefault(normalize_text(text), (text, source))

    patterns = []
    for story in train_stories:
        for kind, item in story.lines:
            if kind == "statement":
                text = render_babi_sentence(item)
                add(text, "babi_statement")
                patterns.append(text)
            else:
                text = render_babi_sentence(item.question, "?")
                add(text, "babi_question")
                patterns.append(text)
                add(render_qa_line(item), "babi_qa")
    train_vocab = {w for doc in corpus.documents["train"] for w in words(doc["text"])}
    n_real = len(pool)
    for text in templated_sentences(patterns, train_vocab, cfg.num_templated_sentences, cfg.seed, set(pool)):
        add(text, "templated")
    for key in sorted(pool):
        text, source = pool[key]
        split = assign_split(cfg.sentence_validation_fraction, cfg.sentence_test_fraction, "sentence", cfg.seed, key)
        corpus.sentences[split].append({"id": f"sent-{short_hash(key)}", "text": text, "source": source})
    for split in SPLITS:
        random.Random(f"order-{cfg.seed}-{split}").shuffle(corpus.sentences[split])
    corpus.extra_stats = {
        "babi_dir": str(babi_dir),
        "tasks": sorted(set(cfg.tasks)),
        "babi_sentences": n_real,
        "templated_sentences": len(pool) - n_real,
        "renamed_documents": n_renamed,
    }
    return corpus


def _sentences_from_documents(corpus: CorpusParts, cfg: TextCorpusConfig) -> None:
    """Split every document into clean sentences; dedupe on the scoring form, train first, then validation,
    then test, so a held-out sentence never occurs in train (nor in both held-out splits)."""
    seen: set[str] = set()
    for split in SPLITS:
        for doc in corpus.documents[split]:
            for i, raw in enumerate(split_sentences(doc["text"])):
                s = clean_sentence(raw, cfg.min_sentence_words, cfg.max_sentence_words)
                if s is None:
                    continue
                key = normalize_text(s)
                if key in seen:
                    continue
                seen.add(key)
                corpus.sentences[split].append({"id": f"{doc['id']}-s{i:04d}", "text": s, "source": doc["source"]})


def _add_document(corpus: CorpusParts, cfg: TextCorpusConfig, doc_id: str, text: str, source: str) -> bool:
    if len(text.split()) < cfg.min_document_words:
        return False
    split = assign_split(cfg.validation_fraction, cfg.test_fraction, "document", cfg.seed, doc_id)
    corpus.documents[split].append({"id": doc_id, "text": text, "source": source})
    return True


def _iter_text_files(entries: Iterable[str]) -> Iterator[tuple[Path, str]]:
    for entry in entries:
        root = resolve_data_path(entry)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*.txt") if p.is_file())
            if not files:
                raise FileNotFoundError(f"{root}: no .txt files in this folder")
            for p in files:
                yield p, p.relative_to(root.parent).with_suffix("").as_posix()
        elif root.is_file():
            yield root, root.with_suffix("").name
        else:
            raise FileNotFoundError(f"{entry}: not a file or folder")


def build_from_files(cfg: TextCorpusConfig) -> CorpusParts:
    """Local text files or folders, each read in its detected format and chunked into documents."""
    corpus = CorpusParts()
    formats = {}
    for path, source in _iter_text_files(cfg.paths):
        items, fmt = read_text_items(path, cfg.file_format)
        formats[source] = fmt
        joiner = "\n\n" if fmt == "paragraphs" else "\n"
        for i, chunk in enumerate(chunk_items(items, cfg.max_document_words, joiner)):
            _add_document(corpus, cfg, f"{source}-{i:05d}", chunk, source)
    _sentences_from_documents(corpus, cfg)
    corpus.extra_stats = {"file_formats": formats}
    return corpus


def default_hub_loader(cfg: TextCorpusConfig) -> Iterable[dict[str, Any]]:
    """The Hub dataset's records, streamed by default so only the records used are downloaded."""
    from datasets import load_dataset

    return load_dataset(cfg.hub_dataset, cfg.hub_config, split=cfg.hub_split, streaming=cfg.streaming)


def build_from_hub(cfg: TextCorpusConfig, hub_loader: Callable[[TextCorpusConfig], Iterable[dict]]) -> CorpusParts:
    """The first `max_documents` records of a Hub text dataset (`hub_loader` is the seam tests use)."""
    corpus = CorpusParts()
    dataset = hub_loader(cfg)
    from tqdm.auto import tqdm

    records = itertools.islice(dataset, cfg.max_documents) if cfg.max_documents else dataset
    n_records = 0
    progress = tqdm(records, total=cfg.max_documents, desc=f"text_corpus: {cfg.hub_dataset}", unit="doc")
    for i, record in enumerate(progress):
        n_records += 1
        if cfg.text_column not in record:
            raise ValueError(
                f"hub dataset {cfg.hub_dataset}: no column {cfg.text_column!r} (columns: {sorted(record)}); "
                "set text_column"
            )
        paragraphs = [clean_text(p) for p in re.split(r"\n\s*\n|\n", record[cfg.text_column] or "")]
        paragraphs = [p for p in paragraphs if p]
        for j, chunk in enumerate(chunk_items(paragraphs, cfg.max_document_words, "\n")):
            _add_document(corpus, cfg, f"{i:08d}-{j:03d}", chunk, cfg.hub_dataset)
    _sentences_from_documents(corpus, cfg)
    corpus.extra_stats = {"hub_dataset": cfg.hub_dataset, "hub_config": cfg.hub_config, "hub_records": n_records}
    return corpus


__all__ = ["CorpusParts", "build_tiny_world", "build_from_files", "default_hub_loader", "build_from_hub"]

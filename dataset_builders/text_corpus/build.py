"""`build_text_corpus`: one source -> documents/, sentences/, qa/ (`DatasetDict`s) and stats.json."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from modeling_speechtext.text_normalization import words

from .config import SPLITS, TextCorpusConfig
from .sources import CorpusParts, build_from_files, build_from_hub, build_tiny_world, default_hub_loader


def _vocab(rows: Iterable[dict[str, str]]) -> Counter:
    counts: Counter = Counter()
    for row in rows:
        counts.update(words(row["text"]))
    return counts


def corpus_stats(corpus: CorpusParts, cfg: TextCorpusConfig) -> dict[str, Any]:
    """Words, vocabulary and sources per split, and for held-out splits the words train never saw (how open the
    vocabulary is); the whole vocabulary when it is small (the tiny world), else the 100 most frequent words."""
    split_stats: dict[str, Any] = {}
    vocab_all: Counter = Counter()
    train_vocab: set[str] = set()
    for split in SPLITS:
        doc_vocab = _vocab(corpus.documents[split])
        sent_vocab = _vocab(corpus.sentences[split])
        vocab = doc_vocab + sent_vocab
        vocab_all.update(vocab)
        if split == "train":
            train_vocab = set(vocab)
        split_stats[split] = {
            "documents": len(corpus.documents[split]),
            "document_words": sum(doc_vocab.values()),
            "sentences": len(corpus.sentences[split]),
            "sentence_words": sum(sent_vocab.values()),
            "vocabulary_size": len(vocab),
            "sentence_sources": dict(sorted(Counter(r["source"] for r in corpus.sentences[split]).items())),
        }
        if split != "train":
            split_stats[split]["words_not_in_train"] = len(set(vocab) - train_vocab)
        if corpus.qa is not None:
            split_stats[split]["qa"] = len(corpus.qa[split])
    total_words = sum(s["document_words"] for s in split_stats.values())
    stats = {
        "source": cfg.source,
        "vocabulary_size": len(vocab_all),
        "train_vocabulary_size": len(train_vocab),
        "document_words": total_words,
        "sentence_words": sum(s["sentence_words"] for s in split_stats.values()),
        "splits": split_stats,
        "config": dataclasses.asdict(cfg),
        **corpus.extra_stats,
    }
    if cfg.source == "tiny_world" or len(vocab_all) <= 1000:
        stats["vocabulary"] = sorted(vocab_all)
    else:
        stats["top_words"] = [w for w, _ in vocab_all.most_common(100)]
    return stats


def _save(rows: dict[str, list[dict[str, Any]]], features, path: Path) -> None:
    from datasets import Dataset, DatasetDict

    columns = list(features)
    dd = DatasetDict(
        {
            split: Dataset.from_dict({c: [r[c] for r in rows[split]] for c in columns}, features=features)
            for split in SPLITS
        }
    )
    if path.exists():
        shutil.rmtree(path)
    dd.save_to_disk(str(path))


def build_text_corpus(
    config: TextCorpusConfig | dict[str, Any],
    output_dir: str | Path,
    *,
    hub_loader: Callable[[TextCorpusConfig], Iterable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Build the corpus into `output_dir`; returns the statistics also written to ``stats.json``.

    `hub_loader(config)` returns the records (dicts) of a Hub dataset; the default streams it with
    ``datasets.load_dataset``. Tests inject an in-memory dataset here.
    """
    from datasets import Features, Value

    cfg = config if isinstance(config, TextCorpusConfig) else TextCorpusConfig.from_dict(config)
    cfg.validate()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.source == "tiny_world":
        corpus = build_tiny_world(cfg)
    elif cfg.source == "files":
        corpus = build_from_files(cfg)
    else:
        corpus = build_from_hub(cfg, hub_loader or default_hub_loader)
    if not corpus.documents["train"] or not corpus.sentences["train"]:
        raise ValueError(f"text_corpus ({cfg.source}): no train documents or sentences survived cleaning")

    text_features = Features({"id": Value("string"), "text": Value("string"), "source": Value("string")})
    _save(corpus.documents, text_features, output_dir / "documents")
    _save(corpus.sentences, text_features, output_dir / "sentences")
    if corpus.qa is not None:
        qa_features = Features(
            {
                "id": Value("string"),
                "task": Value("int32"),
                "story": Value("string"),
                "question": Value("string"),
                "answer": Value("string"),
            }
        )
        _save(corpus.qa, qa_features, output_dir / "qa")
    stats = corpus_stats(corpus, cfg)
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


__all__ = ["corpus_stats", "build_text_corpus"]

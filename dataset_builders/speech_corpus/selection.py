"""Which sentences get spoken: read the text corpus's sentences, drop empties, duplicates and held-out sentences
that also occur in train (validation must be unseen text), and take a seeded sample of each split."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .config import SpeechCorpusConfig

logger = logging.getLogger(__name__)


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


_WORD = re.compile(r"[A-Za-z0-9']+")


def short_utterances(
    texts: list[str], count: int, max_words: int, seed: int, exclude: set[str] = frozenset()
) -> list[str]:
    """Up to `count` one- to `max_words`-word utterances made from `texts`, each ending with a period.

    Single words come first, most frequent first and each in its most frequent casing (so "Mary" stays a name
    and "kitchen" stays lower case), until every word is spoken once; the rest are word pairs and triples cut
    from the sentences (seeded), which gives the short phrases answers are made of ("the kitchen."). Anything
    whose normalised text is in `exclude` (train's, for held-out splits) or already chosen is skipped.
    """
    if count <= 0:
        return []
    from collections import Counter

    casing: dict[str, Counter] = {}
    tokenized = []
    for text in texts:
        words = _WORD.findall(text)
        tokenized.append(words)
        for w in words:
            casing.setdefault(w.lower(), Counter())[w] += 1
    chosen: list[str] = []
    seen = set(exclude)

    def add(words: list[str]) -> None:
        utterance = " ".join(words) + "."
        key = _norm_text(utterance)
        if key not in seen:
            seen.add(key)
            chosen.append(utterance)

    for low in sorted(casing, key=lambda w: (-sum(casing[w].values()), w)):
        if len(chosen) >= count:
            return chosen
        add([casing[low].most_common(1)[0][0]])
    rng = np.random.default_rng([seed, 707])
    long_enough = [w for w in tokenized if len(w) >= 2]
    attempts = 0
    while long_enough and max_words >= 2 and len(chosen) < count and attempts < 20 * count:
        attempts += 1
        words = long_enough[int(rng.integers(len(long_enough)))]
        n = int(rng.integers(2, min(max_words, len(words)) + 1))
        start = int(rng.integers(len(words) - n + 1))
        add(words[start : start + n])
    return chosen


def select_sentences(
    sentences_by_split: Mapping[str, Any], config: SpeechCorpusConfig
) -> dict[str, list[tuple[str, str]]]:
    """Deterministic sentence choice per *sentence* split: drop empties and duplicates, drop held-out sentences that
    also occur in train (validation must be unseen text), shuffle with the seed, keep `max_sentences`, then add
    `short_utterances` words and phrases of the split (ids `<split>-short-NNNNN`)."""
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
        shorts = short_utterances(
            [text for _, text in unique], int(config.short_utterances.get(split, 0)),
            config.short_utterance_max_words, config.seed + idx, exclude=seen | seen_train,
        )  # fmt: skip
        if split == "train":
            seen_train = seen_train | {_norm_text(t) for t in shorts}
        out[split] = chosen + [(f"{split}-short-{i:05d}", text) for i, text in enumerate(shorts)]
    return out


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


__all__ = ["select_sentences", "read_sentences", "short_utterances"]

"""Build statistics: per-chunk/shard counters, their aggregate (eta achieved, speech/text ratio, speed) and plot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BuildStats:
    """Counters of a chunk/shard/build plus the span-length histograms (words and speech tokens per span)."""

    counts: Counter = field(default_factory=Counter)
    span_words: Counter = field(default_factory=Counter)
    span_tokens: Counter = field(default_factory=Counter)

    def update(self, other: BuildStats) -> None:
        self.counts.update(other.counts)
        self.span_words.update(other.span_words)
        self.span_tokens.update(other.span_tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "span_words": {str(k): v for k, v in self.span_words.items()},
            "span_tokens": {str(k): v for k, v in self.span_tokens.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildStats:
        return cls(
            Counter(data.get("counts", {})),
            Counter({int(k): v for k, v in data.get("span_words", {}).items()}),
            Counter({int(k): v for k, v in data.get("span_tokens", {}).items()}),
        )


def aggregate_stats(shard_stats: Sequence[dict[str, Any]], eta_requested: float) -> dict[str, Any]:
    """Sum the shards' counters and derive the headline numbers (eta achieved, speech/text ratio, speed)."""
    total_stats = BuildStats()
    for s in shard_stats:
        total_stats.update(BuildStats.from_json(s))
    counts, words, toks = total_stats.counts, total_stats.span_words, total_stats.span_tokens
    c = dict(counts)
    seconds = c.pop("seconds_x1000", 0) / 1000
    synth_seconds = c.pop("synthesis_seconds_x1000", 0) / 1000
    total = c.get("text_tokens", 0) + c.get("speech_tokens", 0) + c.get("marker_tokens", 0)
    spans = c.get("spans_speech", 0)

    def ratio(a, b):
        return round(a / b, 4) if b else 0.0

    return {
        **{k: int(v) for k, v in sorted(c.items())},
        "shards": len(shard_stats),
        "eta_requested": eta_requested,
        "eta_achieved_words": ratio(c.get("words_speech", 0), c.get("words_total", 0)),
        "eta_achieved_chars": ratio(c.get("chars_speech", 0), c.get("chars_total", 0)),
        "speech_to_text_token_ratio": ratio(c.get("speech_tokens", 0), c.get("text_tokens", 0)),
        "total_tokens": total,
        "mean_span_words": ratio(c.get("words_speech", 0), spans),
        "mean_span_speech_tokens": ratio(c.get("speech_tokens", 0), spans),
        "worker_seconds": round(seconds, 2),
        "tokens_per_second_per_worker": round(total / seconds, 1) if seconds else 0.0,
        "synthesis_tokens_per_second": round(c.get("synthesized_tokens", 0) / synth_seconds, 1)
        if synth_seconds
        else 0.0,
        "span_words_histogram": {str(k): words[k] for k in sorted(words)},
        "span_speech_tokens_histogram": {str(k): toks[k] for k in sorted(toks)},
    }


def plot_span_lengths(stats: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, label in zip(
        axes,
        ("span_words_histogram", "span_speech_tokens_histogram"),
        ("words per speech span", "speech tokens per span"),
    ):
        hist = {int(k): v for k, v in stats[key].items()}
        ax.bar(list(hist), list(hist.values()), width=1.0)
        ax.set_xlabel(label)
        ax.set_ylabel("spans")
    fig.suptitle(
        f"eta requested {stats['eta_requested']}, achieved {stats['eta_achieved_words']} (words); "
        f"speech/text tokens {stats['speech_to_text_token_ratio']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["BuildStats", "aggregate_stats", "plot_span_lengths"]

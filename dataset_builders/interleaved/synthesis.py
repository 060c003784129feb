"""One chunk of documents -> Parquet rows: plan spans, synthesize them together, assemble.

All speech pieces of a chunk go to the text-to-token model in one `synthesize` call: its length-sorted batches are
where the speed comes from. Every random choice is seeded per document (and per span piece), so the rows do not
depend on which documents share a chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .config import InterleavedConfig
from .planning import (
    SPEECH,
    TEXT,
    DocumentPlan,
    Segment,
    assemble_example,
    merge_text_segments,
    plan_document,
    speech_pieces,
)
from .stats import BuildStats


def _plan_documents(docs, cfg: InterleavedConfig, stats: BuildStats) -> list[tuple[str, DocumentPlan]]:
    import numpy as np

    from modeling_speechtext.generation.text_to_token import stable_seed

    plans = []
    for doc_id, text in docs:
        stats.counts["documents_in"] += 1
        rng = np.random.default_rng(stable_seed(cfg.seed, doc_id))
        plan = plan_document(
            text, rng, eta=cfg.eta, granularity=cfg.granularity, lengths=cfg.lengths,
            max_document_chars=cfg.max_document_chars, max_span_chars=cfg.max_span_chars,
        )  # fmt: skip
        stats.counts["truncated_documents"] += plan.truncated
        if plan.skip_reason:
            stats.counts[f"skipped_{plan.skip_reason}"] += 1
        else:
            stats.counts.update(plan.counts)
            plans.append((doc_id, plan))
    return plans


def _synthesize_spans(plans, synth, cfg: InterleavedConfig, stats: BuildStats) -> list[list[list[int]]]:
    """Every sentence of every speech span of the chunk in one `synthesize` call (the batching is what makes it
    fast). A runaway generation (cut by the token budget) would misrepresent its span, so that span goes back to
    text."""
    from modeling_speechtext.generation.text_to_token import stable_seed

    requests = []  # (doc, segment, piece index, text)
    for p, (_, plan) in enumerate(plans):
        for s, seg in enumerate(plan.segments):
            if seg.modality == SPEECH:
                pieces = speech_pieces(seg.speech_text, cfg.min_piece_words)
                requests += [(p, s, k, piece) for k, piece in enumerate(pieces)]
    if not requests:  # no span in the whole chunk (short documents, low eta): the tokenizer rejects an empty batch
        return [[] for _ in plans]
    start = time.perf_counter()
    out = synth.synthesize(
        [text for *_, text in requests],
        seeds=[stable_seed(cfg.seed, plans[p][0], s, k) for p, s, k, _ in requests],
        return_dict=True,
    )
    stats.counts["synthesis_seconds_x1000"] += int(1000 * (time.perf_counter() - start))
    stats.counts["synthesized_sentences"] += len(requests)
    spans: dict[tuple[int, int], list[int] | None] = {}
    for (p, s, _, _), ids, cut in zip(requests, out.speech_ids, out.truncated):
        stats.counts["synthesized_tokens"] += len(ids)
        done = spans.setdefault((p, s), [])
        spans[p, s] = None if cut or done is None else done + ids
    speech: list[list[list[int]]] = [[] for _ in plans]  # per document, its speech spans' ids in order
    for (p, s), ids in spans.items():  # insertion order = document order, segment order
        if ids is None:
            stats.counts["spans_runaway"] += 1
            plans[p][1].segments[s] = Segment(TEXT, plans[p][1].segments[s].text)
        else:
            speech[p].append(ids)
    for _, plan in plans:
        plan.segments = merge_text_segments(plan.segments)  # merging keeps the order of speech segments
    return speech


def _assemble_rows(plans, speech, synth, cfg: InterleavedConfig, stats: BuildStats) -> list[dict[str, Any]]:
    tok = synth.tokenizer
    keyed = [
        (p, s) for p, (_, plan) in enumerate(plans) for s, seg in enumerate(plan.segments) if seg.modality == TEXT
    ]
    texts = [plans[p][1].segments[s].text for p, s in keyed]
    # one tokenizer call per chunk; none when the chunk has no text (every document skipped, or all speech at
    # eta 1): a fast tokenizer raises IndexError on an empty batch
    text_ids = dict(zip(keyed, tok(texts, add_special_tokens=False)["input_ids"])) if texts else {}
    eos = tok.eos_token_id if cfg.add_eos else None
    rows = []
    for p, (doc_id, plan) in enumerate(plans):
        spoken = iter(speech[p])
        ids = [next(spoken) if seg.modality == SPEECH else text_ids[p, s] for s, seg in enumerate(plan.segments)]
        input_ids, records = assemble_example(plan.segments, ids, synth.vocab, eos)
        spans = [(seg, i) for seg, i in zip(plan.segments, ids) if seg.modality == SPEECH]
        n_speech = sum(len(i) for _, i in spans)
        n_text = len(input_ids) - n_speech - 2 * len(spans) - (eos is not None)
        rows.append({"id": doc_id, "input_ids": input_ids, "segments": records, "n_text_tokens": n_text,
                     "n_speech_tokens": n_speech})  # fmt: skip
        c = stats.counts
        c["documents"] += 1
        c["documents_without_speech"] += not spans  # too short for a span at this eta, or nothing speakable
        c["spans_speech"] += len(spans)
        c["speech_tokens"] += n_speech
        c["text_tokens"] += n_text
        c["marker_tokens"] += 2 * len(spans) + (eos is not None)
        c["words_total"] += sum(seg.n_words for seg in plan.segments)
        c["chars_total"] += sum(len(seg.text.strip()) for seg in plan.segments)
        c["words_speech"] += sum(seg.n_words for seg, _ in spans)
        c["chars_speech"] += sum(len(seg.text.strip()) for seg, _ in spans)
        stats.span_words.update(seg.n_words for seg, _ in spans)
        stats.span_tokens.update(len(i) for _, i in spans)
    return rows


def interleave_documents(
    docs: Sequence[tuple[str, str | None]], synth, cfg: InterleavedConfig
) -> tuple[list[dict[str, Any]], BuildStats]:
    """`(doc_id, text)` pairs -> Parquet rows + statistics: plan spans, synthesize them together, assemble."""
    stats = BuildStats()
    plans = _plan_documents(docs, cfg, stats)
    speech = _synthesize_spans(plans, synth, cfg, stats)
    return _assemble_rows(plans, speech, synth, cfg, stats), stats


__all__ = ["interleave_documents"]

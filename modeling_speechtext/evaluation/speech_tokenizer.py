"""How good is a speech tokenizer: ASR WER through its tokens, codebook usage, rate and speed.

WER is measured on what the *tokens* carry (`encode` -> `transcribe_tokens`), the quantity later stages depend
on; `wer_no_vq` bypasses the quantizer to show how much the bottleneck costs (CALIBRATION.md: the 50 Hz encoder
can be far better than the quantized path). Reference and hypothesis both go through `normalize_text`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from modeling_speechtext.data.speech_features import FeatureSet, collate, make_batches
from modeling_speechtext.evaluation.wer import error_rates, word_error_rate


def codebook_stats(token_lists: list[list[int]], codebook_size: int) -> dict:
    """Usage of the codebook: fraction of codes used, perplexity (effective number of codes), entropy in bits."""
    counts = np.bincount(
        np.concatenate([np.asarray(t, dtype=np.int64) for t in token_lists] + [np.zeros(0, np.int64)]),
        minlength=codebook_size,
    )
    total = counts.sum()
    probs = counts[counts > 0] / max(total, 1)
    entropy = float(-(probs * np.log2(probs)).sum()) if total else 0.0
    return {
        "codes_used": int((counts > 0).sum()),
        "codebook_usage": float((counts > 0).mean()),
        "perplexity": float(2**entropy),
        "entropy_bits": entropy,
        "entropy_fraction": entropy / math.log2(codebook_size),
        "num_tokens": int(total),
        "counts": counts.tolist(),
    }


@torch.no_grad()
def evaluate_speech_tokenizer(
    model, features: FeatureSet, max_batch_frames: int = 24000, max_batch_size: int = 64, with_no_vq: bool = True
) -> dict:
    """Encode every clip of `features`, transcribe the tokens, and score. Returns numbers + per-clip outputs."""
    model.eval()
    tokens: list[list[int]] = [[] for _ in range(len(features))]
    no_vq: list[str] = [""] * len(features)
    batches = make_batches(features.lengths, max_batch_frames, max_batch_size, seed=0, shuffle=False)
    encode_seconds = 0.0
    for batch in batches:
        feats, mask, _ = collate(features, batch)
        feats = feats.to(model.device, model.dtype)
        mask = mask.to(model.device)
        start = time.perf_counter()
        ids, lengths = model.encode(feats, mask)
        encode_seconds += time.perf_counter() - start
        for row, n, i in zip(ids.tolist(), lengths.tolist(), batch):
            tokens[i] = row[:n]
        if with_no_vq and model.asr_vocabulary is not None:
            out = model(feats, mask, quantize=False)
            for row, i in zip(model.ctc_greedy_ids(out.logits, out.logit_lengths), batch):
                no_vq[i] = model.decode_asr_ids(row)
    hyps = model.transcribe_tokens(tokens) if model.asr_vocabulary is not None else [""] * len(tokens)
    audio_seconds = sum(features.durations)
    result = {
        **{k: v for k, v in error_rates(features.texts, hyps).items() if k != "n_scored"},
        "num_clips": len(features),
        "audio_hours": audio_seconds / 3600,
        "tokens_per_second": sum(len(t) for t in tokens) / max(audio_seconds, 1e-9),
        "encode_audio_seconds_per_second": audio_seconds / max(encode_seconds, 1e-9),
        **{
            f"codebook_{k}" if not k.startswith("codebook") else k: v
            for k, v in codebook_stats(tokens, model.config.codebook_size).items()
        },
    }
    by_voice: dict[str, list[int]] = {}
    for i, voice in enumerate(features.voices):
        by_voice.setdefault(voice, []).append(i)
    if len(by_voice) > 1:  # which voices fail: the seen/unseen gap is usually a few voices, not all
        result["wer_by_voice"] = {
            voice: round(word_error_rate([features.texts[i] for i in idx], [hyps[i] for i in idx]), 4)
            for voice, idx in sorted(by_voice.items())
        }
    if with_no_vq and model.asr_vocabulary is not None:
        result["wer_no_vq"] = word_error_rate(features.texts, no_vq)
    result["examples"] = [
        {"id": features.ids[i], "ref": features.texts[i], "hyp": hyps[i]} for i in range(min(5, len(features)))
    ]
    return result, tokens, hyps


__all__ = ["codebook_stats", "evaluate_speech_tokenizer"]

"""How good is a speech decoder: mel distances, resynthesis WER, smoothness of streamed audio, mel plots.

Shared by the decoder recipe, `bench/bench_decoder.py` and the `resynthesize` command, so every number in
the reports is computed one way. Resynthesis WER follows the paper: audio -> tokens -> decoder -> waveform
-> the *tokenizer's own ASR* (re-tokenise the decoded audio, transcribe the tokens), next to the same ASR on
the original audio's tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from modeling_speechtext.evaluation.wer import word_error_rate


def mel_l1(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute difference of two aligned natural-log mels `[frames, n_mels]`."""
    n = min(predicted.shape[0], target.shape[0])
    return float((predicted[:n] - target[:n]).abs().mean())


def _cepstrum_matrix(n_mels: int, n_ceps: int) -> torch.Tensor:
    """Rows k = 0..n_ceps-1 of `c_k = 1/N sum_m log S_m cos(pi k (m + 1/2) / N)`: the real cepstrum of the
    (even-extended) log-amplitude mel spectrum, the scale the MCD formula below assumes."""
    k = torch.arange(n_ceps, dtype=torch.float64)[:, None]
    m = torch.arange(n_mels, dtype=torch.float64)[None]
    return (torch.cos(math.pi / n_mels * (m + 0.5) * k) / n_mels).float()


def mel_cepstral_distortion(predicted: torch.Tensor, target: torch.Tensor, n_ceps: int = 13) -> float:
    """MCD in dB from aligned natural-log amplitude mels `[frames, n_mels]`:
    `10/ln10 * sqrt(2 * sum_{k=1..n_ceps-1} (c_k - c'_k)^2)` per frame, averaged. c0 (loudness) is excluded;
    no DTW, since decoder frames are aligned to the tokens. Mel-cepstra from an 80-bin mel, so comparable
    across runs of this project, not to SPTK mcep-based MCDs of other papers."""
    n = min(predicted.shape[0], target.shape[0])
    basis = _cepstrum_matrix(predicted.shape[1], n_ceps)
    diff = (predicted[:n].float() - target[:n].float()) @ basis.T
    return float((10.0 / math.log(10.0)) * torch.sqrt(2.0 * (diff[:, 1:] ** 2).sum(-1)).mean())


def transcribe_waveforms(tokenizer, feature_extractor, waveforms: list, batch_size: int = 16) -> list[str]:
    """The speech tokenizer's ASR on waveforms: tokenise, then transcribe the tokens."""
    from modeling_speechtext.generation.speech_tokenization import encode_waveforms

    waves = [w.numpy() if isinstance(w, torch.Tensor) else w for w in waveforms]
    return tokenizer.transcribe_tokens(encode_waveforms(tokenizer, feature_extractor, waves, batch_size))


def decode_batched(decoder, token_lists: list[list[int]], voice=None, batch_size: int = 16, **kwargs):
    """Offline decode of many utterances: `(mels [frames, n_mels] list, waveforms list)`, length-sorted batches."""
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    mels, waves = [None] * len(order), [None] * len(order)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        out = decoder.generate_mel([token_lists[i] for i in batch], voice=voice, **kwargs)
        for row, i in enumerate(batch):
            mel = out.mel[row, : int(out.mel_lengths[row])]
            mels[i] = mel.cpu()
            waves[i] = decoder.vocode(mel[None])[0].cpu()
    return mels, waves


def border_discontinuity(audio: torch.Tensor, borders: list[int], width: int = 160) -> float:
    """Largest sample-to-sample step within 3 samples of any chunk border, relative to the largest step in the
    `width` samples around it (excluding the border). A click gives values well above 1; smooth joins < 1."""
    d = (audio[1:] - audio[:-1]).abs()
    worst = 0.0
    for b in borders:
        if b - width < 0 or b + width > d.shape[0]:
            continue
        around = torch.cat([d[b - width : b - 3], d[b + 3 : b + width]])
        worst = max(worst, float(d[b - 3 : b + 3].max() / around.max().clamp(min=1e-8)))
    return worst


def plot_mels(pairs: list[tuple[str, torch.Tensor, torch.Tensor]], path: str | Path) -> None:
    """Predicted vs true log-mel, one row per utterance: `pairs` = [(title, predicted, true)], `[frames, n_mels]`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(12, 2.4 * len(pairs)), squeeze=False)
    for row, (title, predicted, true) in enumerate(pairs):
        lo, hi = float(true.min()), float(true.max())
        for col, (name, mel) in enumerate((("decoded", predicted), ("true", true))):
            ax = axes[row, col]
            ax.imshow(mel.T.float().numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{title} - {name}", fontsize=8)
            ax.set_xlabel("frame (10 ms)", fontsize=7)
            ax.set_ylabel("mel bin", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


__all__ = [
    "mel_l1",
    "mel_cepstral_distortion",
    "word_error_rate",
    "transcribe_waveforms",
    "decode_batched",
    "border_discontinuity",
    "plot_mels",
]

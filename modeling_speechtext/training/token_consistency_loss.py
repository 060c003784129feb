"""Token-consistency loss for the speech decoder: the frozen speech tokenizer must read the decoded mel back as the
tokens it was decoded from.

Why: the decoder is judged by resynthesis WER (audio -> tokens -> decoder -> audio -> the tokenizer's ASR), and a
mel that is close in L1/MSE can still lose what the tokenizer listens to (measured: a 3-bin x 5-frame blur of the
*true* mel already costs 17 WER points). The velocity/L1 losses do not see that; this one does. It is the
decoder-side analogue of the ASR-consistency losses used to keep TTS intelligible, with the tokenizer's own
codebook as the target, so no transcript is needed.

The decoder's mel (natural-log magnitude, `n_fft` 1024) is not the tokenizer's input (Whisper's log10 power mel,
`n_fft` 400, scaled), but both are 80-bin mels on the same 100 Hz frame grid, so a linear map per frame (fitted
once by least squares on training audio, `fit_mel_bridge`) carries one to the other. The tokenizer and the map
are frozen: gradients only reach the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class TokenConsistencyOutput(ModelOutput):
    """Args:
    loss: weighted mean cross-entropy of the input tokens under the tokenizer's codebook similarities.
    accuracy: share of (weighted-in) positions whose nearest code is the input token.
    """

    loss: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None


def fit_mel_bridge(decoder_mels: list[torch.Tensor], tokenizer_features: list[torch.Tensor]) -> dict:
    """Least-squares linear map (with bias) from decoder log-mel frames to tokenizer feature frames.

    `decoder_mels[i]`: `[frames, n_mels]`; `tokenizer_features[i]`: `[num_mel_bins, frames']` of the same clip. The
    clips are cut to their common length (both are centred frames at the same hop). Returns the weight
    `[n_mels + 1, num_mel_bins]` and the fit's R^2 (share of the features' variance explained).
    """
    xs, ys = [], []
    for mel, feats in zip(decoder_mels, tokenizer_features):
        n = min(mel.shape[0], feats.shape[1])
        if n > 0:
            xs.append(mel[:n].float())
            ys.append(feats[:, :n].T.float())
    if not xs:
        raise ValueError("fit_mel_bridge: no frames to fit on")
    x, y = torch.cat(xs), torch.cat(ys)
    if x.shape[0] <= x.shape[1]:
        raise ValueError(f"fit_mel_bridge: {x.shape[0]} frames are too few for {x.shape[1]} mel bins")
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1).double()
    weight = torch.linalg.lstsq(x, y.double()).solution
    residual = y.double() - x @ weight
    r2 = 1 - residual.pow(2).sum() / (y.double() - y.double().mean(0)).pow(2).sum()
    return {"weight": weight.float(), "r2": float(r2), "frames": int(x.shape[0])}


class TokenConsistencyLoss(nn.Module):
    """Cross-entropy of the input tokens under `tokenizer(bridge(mel))`'s cosine similarities to its codebook.

    Args:
        tokenizer: a trained `SpeechTokenizerModel` (frozen here: eval mode, no gradients to its weights).
        bridge_weight: `[n_mels + 1, num_mel_bins]` from `fit_mel_bridge`.
        temperature: softmax temperature over the cosine similarities (codes are unit vectors, so similarities
            lie in [-1, 1]; 0.1 makes the distribution sharp enough to train on).
    """

    def __init__(self, tokenizer: nn.Module, bridge_weight: torch.Tensor, temperature: float = 0.1):
        super().__init__()
        if not getattr(tokenizer.config, "use_cosine_codes", False):
            raise ValueError("TokenConsistencyLoss needs a tokenizer with cosine codes (use_cosine_codes=True)")
        if bridge_weight.shape[1] != tokenizer.config.num_mel_bins:
            raise ValueError(
                f"bridge maps to {bridge_weight.shape[1]} bins; the tokenizer takes {tokenizer.config.num_mel_bins}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.register_buffer("bridge_weight", bridge_weight.float())
        self.temperature = temperature

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: no dropout, the running quantizer mean
        return self

    def features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Decoder log-mel `[batch, frames, n_mels]` -> tokenizer features `[batch, num_mel_bins, frames]`."""
        w = self.bridge_weight.to(log_mel.dtype)
        return (log_mel @ w[:-1] + w[-1]).transpose(1, 2)

    def forward(
        self,
        log_mel: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> TokenConsistencyOutput:
        """`log_mel`: `[batch, tokens * frames_per_token, n_mels]` natural-log mel (denormalised decoder output);
        `input_ids`/`attention_mask`: `[batch, tokens]`; `weights`: optional `[batch]` per-row weights."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        frame_mask = attention_mask.bool().repeat_interleave(log_mel.shape[1] // input_ids.shape[1], dim=1)
        with torch.autocast(device_type=log_mel.device.type, enabled=False):
            feats = self.features(log_mel.float())
            _, _, pooled, token_valid = self.tokenizer._encode_pre_quantizer(feats, frame_mask.long())
            z = self.tokenizer.quantizer.project(pooled)
            logits = z @ self.tokenizer.quantizer.codebook.float().T / self.temperature
        n = min(logits.shape[1], input_ids.shape[1])
        logits, ids = logits[:, :n], input_ids[:, :n]
        valid = (token_valid[:, :n] & attention_mask[:, :n].bool()).float()
        if weights is not None:
            valid = valid * weights[:, None].float()
        ce = F.cross_entropy(logits.transpose(1, 2), ids.clamp_min(0), reduction="none")
        denom = valid.sum().clamp_min(1e-6)
        correct = (logits.argmax(-1) == ids).float()
        return TokenConsistencyOutput(loss=(ce * valid).sum() / denom, accuracy=(correct * valid).sum() / denom)


__all__ = ["TokenConsistencyLoss", "TokenConsistencyOutput", "fit_mel_bridge"]

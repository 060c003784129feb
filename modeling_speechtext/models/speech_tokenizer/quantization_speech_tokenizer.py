"""The speech tokenizer's quantizer: one codebook, nearest neighbour, straight-through, EMA updates.

What keeps a single codebook alive at CPU scale lives here: cosine codes, centring of the encoder outputs, a
k-means start from real outputs, Laplace-smoothed EMA updates and usage-based dead-code restarts (each says why).
Under data-parallel training every rank must keep the same codebook, so the statistics are all-reduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .configuration_speech_tokenizer import SpeechTokenizerConfig

PAD_TOKEN_ID = -1
"""Value of `encode` outputs past each sequence's length: not a code, so misuse fails loudly."""


@dataclass
class SpeechTokenizerQuantizerOutput(ModelOutput):
    """Output of the vector quantizer: straight-through vectors (model width), ids, commitment loss, usage."""

    quantized: torch.FloatTensor | None = None
    token_ids: torch.LongTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None


class SpeechTokenizerVectorQuantizer(nn.Module):
    """One codebook, nearest neighbour + straight-through, EMA updates, usage-based dead-code restarts.

    The codebook is a buffer (EMA, not gradient, moves it). Distances are computed in float32 even under bf16
    autocast: argmax ties in bf16 would make tokens depend on the batch.
    """

    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.config = config
        dim, width = config.resolved_codebook_dim, config.d_model
        self.project_in = nn.Linear(width, dim) if dim != width else nn.Identity()
        self.project_out = nn.Linear(dim, width) if dim != width else nn.Identity()
        self.register_buffer("codebook", torch.empty(config.codebook_size, dim))
        self.register_buffer("ema_count", torch.empty(config.codebook_size))  # EMA usage per code
        self.register_buffer("ema_sum", torch.empty(config.codebook_size, dim))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("input_mean", torch.zeros(width))  # running mean of encoder outputs (centring)

    def _normalize(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) if self.config.use_cosine_codes else z

    def project(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output -> code space (float32, normalised for cosine codes).

        The running mean of the encoder outputs is subtracted first. Without it, the part every frame shares
        (the slowly varying sinusoid channels of the positional embedding, the conv stem's offset) dominates:
        in a test run all projected vectors had cosine 0.999 to each other and the freshly k-means-initialised
        codebook collapsed to one code within a step. In training (`mask` given) the mean is updated first.
        """
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            hidden = hidden.float()
            if self.config.quantizer_centering_decay is not None:
                if self.training and mask is not None and mask.any():
                    # the batch's own mean in training (the common part can jump in one optimiser step),
                    # the running mean at inference (tokens must not depend on the batch)
                    batch_mean = self._update_input_mean(hidden[mask].mean(0).detach())
                    hidden = hidden - batch_mean
                else:
                    hidden = hidden - self.input_mean
            return self._normalize(self.project_in(hidden))

    @torch.no_grad()
    def _update_input_mean(self, batch_mean: torch.Tensor) -> torch.Tensor:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch_mean)
            batch_mean /= torch.distributed.get_world_size()
        self.input_mean.lerp_(batch_mean, 1 - self.config.quantizer_centering_decay)
        return batch_mean

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        codebook = self.codebook.float()
        if self.config.use_cosine_codes:
            return (z @ codebook.T).argmax(-1)
        distances = z.pow(2).sum(-1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(-1)
        return distances.argmin(-1)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Code ids -> model-width vectors (what the layers after the quantizer see)."""
        return self.project_out(F.embedding(token_ids, self.codebook.float()))

    @torch.no_grad()
    def init_codebook(self, hidden: torch.Tensor, kmeans_iters: int = 10, generator=None) -> None:
        """Start the codebook from real encoder outputs (model width, `[N, d_model]`) by a few k-means steps.

        Random init is what collapsed to 1-4 codes in our calibration run; codes born among the data do not.
        The centring mean starts at these outputs' mean.
        """
        if self.config.quantizer_centering_decay is not None:
            self.input_mean.copy_(hidden.float().mean(0))
        vectors = self.project(hidden)
        k = self.config.codebook_size
        pick = torch.randint(len(vectors), (k,), generator=generator) if len(vectors) < k else None
        if pick is None:
            pick = torch.randperm(len(vectors), generator=generator)[:k]
        centroids = vectors[pick].clone()
        for _ in range(kmeans_iters):
            self.codebook.copy_(centroids)
            ids = self.nearest(vectors)
            counts = torch.bincount(ids, minlength=k).float()
            sums = torch.zeros_like(centroids).index_add_(0, ids, vectors)
            used = counts > 0
            centroids[used] = self._normalize(sums[used] / counts[used, None])
        self.codebook.copy_(centroids)
        share = len(vectors) / k
        counts = torch.bincount(self.nearest(vectors), minlength=k).float()
        self.ema_count.copy_(torch.where(counts > 0, counts, torch.full_like(counts, share)))
        self.ema_sum.copy_(centroids * self.ema_count[:, None])

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        cfg = self.config
        counts = torch.bincount(ids, minlength=cfg.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, ids, z)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)  # every rank must keep the same codebook
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(cfg.ema_decay).add_(counts, alpha=1 - cfg.ema_decay)
        self.ema_sum.mul_(cfg.ema_decay).add_(sums, alpha=1 - cfg.ema_decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + cfg.ema_epsilon) / (total + cfg.codebook_size * cfg.ema_epsilon) * total
        self.codebook.copy_(self._normalize(self.ema_sum / smoothed[:, None]))
        self.num_updates += 1
        if cfg.restart_interval > 0 and int(self.num_updates) % cfg.restart_interval == 0:
            self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor) -> int:
        """Codes whose EMA usage fell below `dead_code_threshold` x the uniform share restart at encoder outputs.

        Usage is the EMA count (a long memory), not a short window: rare but healthy codes survive small batches.
        """
        share = self.ema_count.sum() / self.config.codebook_size
        dead = (self.ema_count < self.config.dead_code_threshold * share).nonzero().squeeze(-1)
        if len(dead) == 0 or len(z) == 0:
            return 0
        picks = z[torch.randint(len(z), (len(dead),), device=z.device)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(picks, src=0)
        self.codebook[dead] = picks
        self.ema_count[dead] = share
        self.ema_sum[dead] = picks * share
        return len(dead)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> SpeechTokenizerQuantizerOutput:
        z = self.project(hidden, mask)
        ids = self.nearest(z)
        flat_z, flat_ids = z[mask], ids[mask]
        quantized = F.embedding(ids, self.codebook.float())
        commitment = F.mse_loss(flat_z, quantized[mask].detach()) if len(flat_z) else z.sum() * 0
        if self.training:
            self._ema_update(flat_z.detach(), flat_ids)
        quantized = z + (quantized - z).detach()  # straight-through: gradients flow into the encoder
        probs = torch.bincount(flat_ids, minlength=self.config.codebook_size).float() / max(len(flat_ids), 1)
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
        return SpeechTokenizerQuantizerOutput(
            quantized=self.project_out(quantized).to(hidden.dtype),
            token_ids=ids.masked_fill(~mask, PAD_TOKEN_ID),
            commitment_loss=commitment,
            perplexity=perplexity,
        )


__all__ = ["PAD_TOKEN_ID", "SpeechTokenizerQuantizerOutput", "SpeechTokenizerVectorQuantizer"]

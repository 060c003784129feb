"""`SFTTrainer` with the model's own causal-LM loss: what the base LM and pretraining recipes train with.

Why not TRL's loss path: TRL 1.16's `SFTTrainer.compute_loss` always runs the model through its chunked fused
LM-head kernel (`trl/kernels/chunked_logprob.py`, wired in by `add_fused_lm_head`) to get per-token log-probs,
entropy and top-1 hits, and has no setting to turn that off. That kernel saves memory on a GPU with a 150k
vocabulary; on these CPUs, with our ~1.8k-entry vocabulary, its tiled forward and backward were the largest part of
the recipe's 1.43x step time over a bare PyTorch loop (`bench/bench_pretrain.py`, profile in
docs/SPEECH_TEXT_LM.md). Here the loss is `transformers.Trainer.compute_loss`: the model's `ForCausalLMLoss` on the
labels the TRL collator built (completion masks and padding already -100), divided by `num_items_in_batch` exactly
as TRL divides, so the trained objective is the same (tested). The token accuracy TRL logs is kept (argmax of the
logits the model returns anyway); the entropy is not logged.

Everything else stays TRL's: datasets, packing, collators, completion-only loss, checkpoints, accelerate/FSDP.
A run that needs what TRL's path adds falls back to it: another `loss_type`, label smoothing, a
`compute_loss_func`, MoE aux loss, sequence or context parallelism, and any vocabulary over `FUSED_VOCAB_SIZE`
entries, where the full float32 logits and their gradient would cost GBs (the `paper` preset's ~168k vocabulary
at 8192 tokens: ~10-15 GB per GPU) and saving that memory is what TRL's chunked kernel is for.
"""

from __future__ import annotations

import torch
from transformers import Trainer
from trl import SFTTrainer

FUSED_VOCAB_SIZE = 32768
"""Above this vocabulary TRL's chunked LM-head path is kept (memory); our presets below it are CPU-sized."""


class CausalLMSFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss is the model's own (see the module docstring); `mean_token_accuracy` still logged."""

    def _uses_trl_loss_path(self) -> bool:
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        vocab = getattr(self.model.config.get_text_config(), "vocab_size", 0) or 0
        return bool(
            self.args.loss_type != "nll"
            or self.compute_loss_func is not None
            or self.label_smoother is not None
            or self.aux_loss_enabled
            or vocab > FUSED_VOCAB_SIZE
            or (parallelism is not None and (getattr(parallelism, "sp_enabled", False)
                                             or getattr(parallelism, "cp_enabled", False)))
        )  # fmt: skip

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._uses_trl_loss_path() or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        loss, outputs = Trainer.compute_loss(
            self, model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        with torch.no_grad():
            labels = inputs["labels"][:, 1:]
            valid = labels != -100
            hits = (outputs.logits[:, :-1].argmax(dim=-1) == labels) & valid
            any_valid = bool(valid.any())
            num_valid = self.accelerator.gather_for_metrics(valid.sum()).sum()
            num_correct = self.accelerator.gather_for_metrics(hits.sum()).sum()
        if not any_valid:  # a batch without a loss token: a finite zero (as TRL), not the mean of nothing (NaN)
            loss = outputs.logits.sum() * 0.0
        self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":  # TRL's own token count, inline in SFTTrainer.compute_loss (not callable on its own)
            if "attention_mask" in inputs:
                local = inputs["attention_mask"].sum()
            elif "position_ids" in inputs:  # padding-free batches carry position_ids instead of a mask
                local = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            else:
                raise ValueError("a training batch needs `attention_mask` or `position_ids` to count its tokens")
            self._total_train_tokens += self.accelerator.gather_for_metrics(local).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss


__all__ = ["FUSED_VOCAB_SIZE", "CausalLMSFTTrainer"]

"""`recipes.lm_trainer.CausalLMSFTTrainer`: the same loss and gradients as TRL's own `SFTTrainer` on completion-masked,
padded batches (so swapping the loss path changes speed, not the objective), token accuracy still logged, and TRL's
path kept where it is needed."""

import pytest
import torch


def _setup(tmp_path, **overrides):
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import SFTConfig

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1}, "<pad>")),
        pad_token="<pad>",
        eos_token="<eos>",
    )
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(2, 40, (n,), generator=g).tolist() for n in (7, 12, 9, 5)]
    masks = [[0] * (len(r) // 2) + [1] * (len(r) - len(r) // 2) for r in rows]  # loss on the second half only
    data = Dataset.from_dict({"input_ids": rows, "completion_mask": masks})
    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    args = SFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_length=32, use_cpu=True, report_to="none",
        gradient_checkpointing=False, packing=False, completion_only_loss=True, dataloader_num_workers=0,
        **overrides,
    )  # fmt: skip
    return model, args, data, tok


def _loss_and_grad(trainer_cls, tmp_path, **overrides):
    model, args, data, tok = _setup(tmp_path, **overrides)
    trainer = trainer_cls(model=model, args=args, train_dataset=data, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    # as under gradient accumulation over 2 such batches: the loss is a sum over this batch / all items of both, so a
    # trainer that ignored `num_items_in_batch` (a plain mean) would give twice the loss
    n_items = 2 * (batch["labels"][:, 1:] != -100).sum()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
    loss.backward()
    return loss.item(), model.model.embed_tokens.weight.grad.clone(), trainer, batch


def test_same_loss_and_gradient_as_trl(tmp_path):
    from trl import SFTTrainer

    from recipes.lm_trainer import CausalLMSFTTrainer

    ours, g_ours, trainer, batch = _loss_and_grad(CausalLMSFTTrainer, tmp_path / "a")
    theirs, g_theirs, trl_trainer, batch_trl = _loss_and_grad(SFTTrainer, tmp_path / "b")
    plain_mean = trainer.model(**{k: v for k, v in batch.items() if k != "completion_mask"}).loss.item()
    assert ours == pytest.approx(plain_mean / 2, rel=1e-5)  # summed over the batch / num_items_in_batch
    assert torch.equal(batch["labels"], batch_trl["labels"])
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()  # masked prompt and padding
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-7)
    assert not trainer._uses_trl_loss_path()
    assert "entropy" not in trainer._metrics["train"] and "entropy" in trl_trainer._metrics["train"]  # not TRL's path
    accuracy = trainer._metrics["train"]["mean_token_accuracy"]
    assert accuracy == pytest.approx(trl_trainer._metrics["train"]["mean_token_accuracy"])  # same shift and mask
    _, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert outputs.logits.shape[:2] == batch["input_ids"].shape
    assert trainer._metrics["train"]["num_tokens"] == [2 * int(batch["attention_mask"].sum())]  # two calls


def test_batch_without_loss_tokens_is_a_finite_zero(tmp_path):
    from recipes.lm_trainer import CausalLMSFTTrainer

    model, args, data, tok = _setup(tmp_path)
    trainer = CausalLMSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    batch = dict(next(iter(trainer.get_train_dataloader())))
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss = trainer.compute_loss(model, batch)
    assert torch.isfinite(loss) and loss.item() == 0.0 and loss.requires_grad


def test_large_vocabulary_keeps_trls_memory_saving_path(tmp_path):
    from recipes.lm_trainer import FUSED_VOCAB_SIZE, CausalLMSFTTrainer

    model, args, data, tok = _setup(tmp_path)
    trainer = CausalLMSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    assert not trainer._uses_trl_loss_path()
    model.config.vocab_size = FUSED_VOCAB_SIZE + 1
    assert trainer._uses_trl_loss_path()


def test_trl_loss_path_kept_where_needed(tmp_path):
    """A `loss_type` other than nll (here TRL's DFT) is TRL's computation, not the model's plain cross-entropy."""
    from recipes.lm_trainer import CausalLMSFTTrainer

    model, args, data, tok = _setup(tmp_path, loss_type="dft")
    trainer = CausalLMSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    assert trainer._uses_trl_loss_path()
    batch = next(iter(trainer.get_train_dataloader()))
    plain = model(**{k: v for k, v in batch.items() if k != "completion_mask"}).loss
    dft = trainer.compute_loss(model, dict(batch))
    assert dft.item() < plain.item()  # DFT weighs each token's loss by its probability (< 1)

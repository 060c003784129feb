"""A run folder for the mixture and pretraining tests: documents, speech tokens, interleaved shards (made with
*another* tokenizer, whose speech tokens sit at other ids); `add_base_lm` adds a tiny base LM."""

from __future__ import annotations

from pathlib import Path

from t2t_fixtures import tiny_text_tokenizer

from modeling_speechtext.vocab import add_speech_tokens


def make_mixture_run(run: Path, K: int) -> Path:
    from datasets import Dataset, DatasetDict

    from dataset_builders.interleaved import Segment, assemble_example



    docs = Dataset.from_dict({"id": ["d0", "d1", "d2"], "text": ["Mary went to the kitchen.", "", "John left."],
                              "source": ["x"] * 3})  # fmt: skip
    DatasetDict({"train": docs, "validation": docs}).save_to_disk(str(run / "text_corpus" / "documents"))
    speech = Dataset.from_dict({
        "id": [f"u{i}" for i in range(6)], "text": ["Mary went home."] * 5 + [""],
        "voice": ["a", "a", "b", "a", "b", "a"], "speech_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10], [11], [12]],
    })  # fmt: skip
    DatasetDict({"train": speech}).save_to_disk(str(run / "speech_tokens" / "dataset"))
    # interleaved data: ids of a tokenizer whose speech tokens sit elsewhere (an extra token shifts them)
    other = tiny_text_tokenizer()
    other.add_tokens(["<|voice:x|>"], special_tokens=True)
    other_vocab = add_speech_tokens(None, other, K)
    segs = [Segment("text", "Mary went"), Segment("speech", " to the kitchen.", "to the kitchen.")]
    ids, records = assemble_example(segs, [other("Mary went")["input_ids"], [3, 1, 4]], other_vocab)
    (run / "interleaved" / "data").mkdir(parents=True)
    Dataset.from_list([{"id": "i0", "input_ids": ids, "segments": records}]).to_parquet(
        str(run / "interleaved" / "data" / "train-00000-of-00001.parquet")
    )
    other.save_pretrained(str(run / "interleaved" / "tokenizer"))
    return run


def add_base_lm(run: Path, K: int) -> Path:
    """A random tiny Llama over the plain text tokenizer in `run/base_lm`, and a speech tokenizer config."""
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = tiny_text_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(run / "base_lm")
    tok.save_pretrained(run / "base_lm")
    (run / "speech_tokenizer").mkdir(exist_ok=True)
    (run / "speech_tokenizer" / "config.json").write_text(json.dumps({"codebook_size": K}))
    return run

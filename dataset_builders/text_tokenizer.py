"""Text tokenizer builder: a byte-level BPE trained offline on the text corpus, saved as a transformers tokenizer.

The demo has no Hub LM to borrow a tokenizer from, so it trains one in about a second with `tokenizers`
(GPT-2 style: byte-level pre-tokenizer and decoder, so every string round-trips exactly and nothing is ever
unknown). In the tiny world (~150 words) a vocabulary of ~500 makes every word one token. Real runs copy the
base LM's tokenizer instead (``pretrained: THUDM/glm-4-9b-hf``), since the LM's embeddings are tied to it.

The folder loads with ``AutoTokenizer.from_pretrained(dir)``; ``<|endoftext|>`` is bos, eos and pad.
In transformers 5 the fast-tokenizer class is ``TokenizersBackend`` (``PreTrainedTokenizerFast`` is an alias).
``stats.json`` beside it records tokens per word on held-out text.

Stage config (``recipes/configs/<preset>/text_tokenizer.yaml``)::

    vocab_size: 512          # or
    pretrained: THUDM/glm-4-9b-hf
    min_frequency: 2
    special_tokens: []       # extra special tokens (speech tokens are added later, by the text_to_token stage)
    model_max_length: 2048
    max_training_texts: null # cap for large corpora
    space_after_newline: false  # true: a word after a newline is the same token as inside a line (see below)
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modeling_speechtext.text_normalization import words

logger = logging.getLogger(__name__)

ENDOFTEXT = "<|endoftext|>"
_STAGE_KEYS = {
    "vocab_size",
    "min_frequency",
    "special_tokens",
    "pretrained",
    "trust_remote_code",
    "model_max_length",
    "max_training_texts",
    "space_after_newline",
    "seed",
}


def _fast_tokenizer_class():
    try:
        from transformers import TokenizersBackend  # transformers >= 5
    except ImportError:  # transformers 4.x
        from transformers import PreTrainedTokenizerFast as TokenizersBackend
    return TokenizersBackend


def train_text_tokenizer(
    texts_iterator: Iterable[str],
    vocab_size: int,
    output_dir: str | Path | None = None,
    special_tokens: Iterable[str] = (ENDOFTEXT,),
    min_frequency: int = 2,
    model_max_length: int | None = None,
    space_after_newline: bool = False,
):
    """Train a byte-level BPE on `texts_iterator`; save it to `output_dir` (if given) and return it.

    `special_tokens` always includes ``<|endoftext|>`` (first, id 0), used as bos/eos/pad. The 256 byte symbols
    are always in the vocabulary, so `vocab_size` must leave room for them and the special tokens.

    `space_after_newline`: a GPT-2 style BPE spells a word differently at the start of a line (``Mary``) and
    inside one (``ĠMary``), so a bAbI question ("Where is Mary?") names its person with another token than the
    story lines do, and a small LM must first learn that the two are one name. With this on, the normalizer
    inserts a space after every newline that is followed by a non-space and the decoder takes it out again, so
    both spellings are ``ĠMary`` (measured: docs/SPEECH_TEXT_LM.md). The first word of a text keeps its bare form
    (a space there would come back on decode). The one string that does not round-trip is a newline followed by a
    space, which decodes without that space: keep it off for free text with indentation.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = [ENDOFTEXT] + [t for t in dict.fromkeys(special_tokens) if t != ENDOFTEXT]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(alphabet) + len(specials)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: a byte-level BPE needs at least {minimum} "
            f"({len(alphabet)} bytes + {len(specials)} special tokens)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if space_after_newline:
        tok.normalizer = normalizers.Replace(Regex(r"\n(?=\S)"), "\n ")
        tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("\n ", "\n")])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts_iterator, trainer=trainer)
    if tok.get_vocab_size() == len(specials):
        raise ValueError("text tokenizer: the training texts were empty")

    kwargs: dict[str, Any] = {}
    if model_max_length:
        kwargs["model_max_length"] = int(model_max_length)
    hf_tok = _fast_tokenizer_class()(
        tokenizer_object=tok,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        clean_up_tokenization_spaces=False,  # decode(encode(s)) must give s back
        **kwargs,
    )
    extra = specials[1:]
    if extra:
        hf_tok.add_special_tokens({"extra_special_tokens": extra}, replace_extra_special_tokens=False)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        hf_tok.save_pretrained(str(output_dir))
    return hf_tok


def tokenizer_stats(tokenizer, texts: Iterable[str], max_texts: int = 2000) -> dict[str, Any]:
    """Tokens per word (scoring-form words) and the share of word occurrences that are a single token.

    A "word piece" is a pre-tokenizer chunk with letters in it (``Ġkitchen``, ``Mary``); punctuation and
    newlines count as tokens but not as words.
    """
    n_texts = n_tokens = n_words = n_pieces = n_single = 0
    multi: dict[str, int] = {}
    backend = tokenizer.backend_tokenizer
    for text in itertools.islice(texts, max_texts):
        n_texts += 1
        n_tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"])
        n_words += len(words(text))
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized):
            if not any(c.isalpha() for c in piece):
                continue
            n_pieces += 1
            if len(backend.model.tokenize(piece)) == 1:
                n_single += 1
            else:
                multi[piece] = multi.get(piece, 0) + 1
    return {
        "texts": n_texts,
        "tokens": n_tokens,
        "words": n_words,
        "tokens_per_word": round(n_tokens / n_words, 4) if n_words else None,
        "single_token_word_fraction": round(n_single / n_pieces, 4) if n_pieces else None,
        "most_frequent_multi_token_words": [
            tokenizer.convert_tokens_to_string([w]) for w, _ in sorted(multi.items(), key=lambda x: -x[1])[:20]
        ],
    }


def count_tokens(tokenizer, texts: list[str], batch_size: int = 1000) -> int:
    """Total tokens of `texts` (no special tokens), batched through the Rust backend."""
    backend = tokenizer.backend_tokenizer
    total = 0
    for i in range(0, len(texts), batch_size):
        total += sum(len(e.ids) for e in backend.encode_batch(texts[i : i + batch_size], add_special_tokens=False))
    return total


def _corpus_texts(corpus_dir: Path, split: str) -> Iterator[str]:
    from datasets import load_from_disk

    for part in ("documents", "sentences"):
        path = corpus_dir / part
        if not path.is_dir():
            raise FileNotFoundError(f"{path} not found: run the text_corpus stage first")
        yield from load_from_disk(str(path))[split]["text"]


def run_stage(config: dict[str, Any], output_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Train (or copy, with ``pretrained``) the text tokenizer from ``run_dir/text_corpus``."""
    unknown = sorted(set(config) - _STAGE_KEYS)
    if unknown:
        raise ValueError(f"text_tokenizer config: unknown key(s) {unknown}; known keys are {sorted(_STAGE_KEYS)}")
    output_dir = Path(output_dir)
    corpus_dir = Path(run_dir) / "text_corpus"
    pretrained = config.get("pretrained")
    if pretrained:
        if config.get("space_after_newline"):
            raise ValueError("text_tokenizer config: space_after_newline applies to a trained BPE, not to `pretrained`")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(pretrained), trust_remote_code=bool(config.get("trust_remote_code")))
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # batching needs a pad token; the LM never attends to it
        tok.save_pretrained(str(output_dir))
        source = f"pretrained:{pretrained}"
    else:
        if "vocab_size" not in config:
            raise ValueError("text_tokenizer config: set `vocab_size` (train a BPE) or `pretrained` (copy one)")
        texts: Iterable[str] = _corpus_texts(corpus_dir, "train")
        if config.get("max_training_texts"):
            texts = itertools.islice(texts, int(config["max_training_texts"]))
        tok = train_text_tokenizer(
            texts,
            vocab_size=int(config["vocab_size"]),
            output_dir=output_dir,
            special_tokens=[ENDOFTEXT, *(config.get("special_tokens") or [])],
            min_frequency=int(config.get("min_frequency", 2)),
            model_max_length=config.get("model_max_length"),
            space_after_newline=bool(config.get("space_after_newline", False)),
        )
        source = "trained"
    metrics: dict[str, Any] = {"source": source, "vocab_size": len(tok)}
    if (corpus_dir / "documents").is_dir():
        from datasets import load_from_disk

        for part in ("documents", "sentences"):
            dd = load_from_disk(str(corpus_dir / part))
            for split in dd:  # corpus size in this tokenizer's tokens (what LM budgets are counted in)
                metrics[f"{split}_{part}_tokens"] = count_tokens(tok, dd[split]["text"])
            held_out = dd["validation"]["text"]
            s = tokenizer_stats(tok, iter(held_out))
            metrics[f"validation_{part}_tokens_per_word"] = s["tokens_per_word"]
            metrics[f"validation_{part}_single_token_word_fraction"] = s["single_token_word_fraction"]
            metrics[f"validation_{part}_multi_token_words"] = s["most_frequent_multi_token_words"]
    (output_dir / "stats.json").write_text(json.dumps(metrics, indent=2))
    return metrics


__all__ = ["ENDOFTEXT", "train_text_tokenizer", "tokenizer_stats", "count_tokens", "run_stage"]

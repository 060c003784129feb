"""The ASR vocabulary of the speech tokenizer: subword pieces and their byte-level decoding, in their own file.

The CTC head predicts subword ids; turning them into text needs the pieces of the BPE the head was trained with
(~151k strings at the paper's size). They used to sit in `config.json`, which made the config a vocabulary file.
Now they are saved as `asr_vocab.json` next to the weights (`SpeechTokenizerModel.save_pretrained` writes it,
`from_pretrained` reads it), and `config.json` keeps only `asr_vocab_size`, the size the head is built with.

Why not the BPE tokenizer itself: the folder may carry one (`AutoTokenizer` works on it), but decoding with it
goes through `clean_up_tokenization_spaces` and special-token options that differ between tokenizer versions. The
transcript is defined by the pieces alone (join, map GPT-2's printable bytes back to bytes, UTF-8), which needs no
tokenizer library and gives the same text on every machine.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

ASR_VOCAB_NAME = "asr_vocab.json"
"""File of the ASR vocabulary in a saved speech tokenizer folder."""

_FORMAT_VERSION = 1


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[str, int]:
    """GPT-2's table of printable characters -> bytes (the inverse direction), to decode byte-level BPE pieces."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class SpeechTokenizerAsrVocabulary:
    """The pieces of the ASR head's subword vocabulary and how to turn a sequence of their ids into text.

    Args:
        pieces (`list[str]`): the piece of every id, `len(pieces) == asr_vocab_size` (`""` for an id the tokenizer
            had no string for).
        special_ids (`list[int]`, *optional*): ids never printed (end of text, padding).
        byte_level (`bool`, defaults to `True`): pieces use GPT-2's byte alphabet (`Ġ` = space) and are decoded
            back to UTF-8 bytes; otherwise they are joined as they are.
    """

    def __init__(self, pieces: list[str], special_ids: list[int] | None = None, byte_level: bool = True):
        if not pieces or not all(isinstance(p, str) for p in pieces):
            raise ValueError("an ASR vocabulary needs a non-empty list of string pieces")
        self.pieces = list(pieces)
        self.special_ids = sorted(set(int(i) for i in special_ids or []))
        self.byte_level = bool(byte_level)
        self._special = frozenset(self.special_ids)

    def __len__(self) -> int:
        return len(self.pieces)

    def __eq__(self, other) -> bool:
        if not isinstance(other, SpeechTokenizerAsrVocabulary):
            return NotImplemented
        return (self.pieces, self.special_ids, self.byte_level) == (other.pieces, other.special_ids, other.byte_level)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={len(self)}, special_ids={self.special_ids}, byte_level={self.byte_level})"

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpeechTokenizerAsrVocabulary:
        """The pieces of a (byte-level BPE) transformers tokenizer, id by id; byte-level is detected, not assumed."""
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special_ids = sorted(set(tokenizer.all_special_ids))
        special = set(special_ids)
        table = bytes_to_unicode()
        normal = [p for i, p in enumerate(pieces) if i not in special and p]
        byte_level = all(c in table for p in normal for c in p)
        return cls([p if p is not None else "" for p in pieces], special_ids, byte_level)

    def decode(self, ids: list[int]) -> str:
        """Subword ids -> text: special ids dropped, pieces joined, bytes decoded (invalid UTF-8 replaced)."""
        text = "".join(self.pieces[i] for i in ids if i not in self._special)
        if not self.byte_level:
            return text.strip()
        table = bytes_to_unicode()
        return bytes(table[c] for c in text if c in table).decode("utf-8", errors="replace").strip()

    def batch_decode(self, sequences: list[list[int]]) -> list[str]:
        return [self.decode(ids) for ids in sequences]

    def to_dict(self) -> dict:
        return {
            "format_version": _FORMAT_VERSION,
            "size": len(self),
            "byte_level": self.byte_level,
            "special_ids": self.special_ids,
            "pieces": self.pieces,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write `asr_vocab.json` into `save_directory`; returns its path."""
        path = Path(save_directory) / ASR_VOCAB_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
        return str(path)

    @classmethod
    def from_file(cls, path: str | os.PathLike, expected_size: int | None = None) -> SpeechTokenizerAsrVocabulary:
        """Read an `asr_vocab.json`; with `expected_size` (the config's `asr_vocab_size`) a mismatch is an error."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            vocabulary = cls(data["pieces"], data.get("special_ids"), data.get("byte_level", True))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a readable ASR vocabulary ({err})") from err
        if expected_size is not None and len(vocabulary) != expected_size:
            raise ValueError(
                f"{path} has {len(vocabulary)} pieces but the model's asr_vocab_size is {expected_size}: the "
                "vocabulary belongs to another model (save the model again after set_asr_vocabulary)"
            )
        return vocabulary

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, expected_size: int | None = None, **hub_kwargs
    ) -> SpeechTokenizerAsrVocabulary | None:
        """The vocabulary of a saved folder or Hub repo, or `None` when it has no `asr_vocab.json`.

        `hub_kwargs` are those of `from_pretrained` (`revision`, `cache_dir`, `token`, `local_files_only`, ...).
        """
        from transformers.utils import cached_file

        resolved = cached_file(
            pretrained_model_name_or_path,
            ASR_VOCAB_NAME,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
        return None if resolved is None else cls.from_file(resolved, expected_size)


def legacy_asr_vocabulary(config) -> SpeechTokenizerAsrVocabulary | None:
    """The vocabulary a config saved before `asr_vocab.json` existed carried in itself, or `None`.

    Such folders (trained runs) keep transcribing identically: the same pieces, special ids and byte-level flag.
    """
    legacy = getattr(config, "_legacy_asr_vocabulary", None) or {}
    if legacy.get("asr_vocab") is None:
        return None
    vocabulary = SpeechTokenizerAsrVocabulary(
        legacy["asr_vocab"], legacy.get("asr_special_ids"), legacy.get("asr_byte_level", True)
    )
    if len(vocabulary) != config.asr_vocab_size:
        raise ValueError(
            f"the config's legacy asr_vocab has {len(vocabulary)} pieces but asr_vocab_size is {config.asr_vocab_size}"
        )
    return vocabulary


__all__ = ["ASR_VOCAB_NAME", "SpeechTokenizerAsrVocabulary", "bytes_to_unicode", "legacy_asr_vocabulary"]

"""Speech tokens as ordinary vocabulary entries, added by ONE function shared by every LM in the project.

GLM-4-Voice extends a text LM's vocabulary with `<|audio_0|>`..`<|audio_{K-1}|>` plus the markers that wrap
speech (`<|begin_of_audio|>`, `<|end_of_audio|>`). Keeping the speech tokens *contiguous* makes speech id <->
token id a single offset (no lookup tables, vectorisable), and a `SpeechVocab` read back from any saved
tokenizer gives the same mapping, so the text-to-token model, the interleaved builder and the speech-text LM
can never disagree about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modeling_speechtext.constants import AUDIO_TOKEN_TEMPLATE, BEGIN_OF_AUDIO, END_OF_AUDIO


def speech_token_strings(codebook_size: int) -> list[str]:
    """`<|audio_0|>`..`<|audio_{K-1}|>` in id order."""
    return [AUDIO_TOKEN_TEMPLATE.format(i) for i in range(codebook_size)]


def _check_codebook_size(codebook_size: Any) -> int:
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size < 1:
        raise ValueError(f"codebook_size must be a positive int, got {codebook_size!r}")
    return codebook_size


@dataclass(frozen=True)
class SpeechVocab:
    """Where the speech tokens sit in a tokenizer's vocabulary.

    Args:
        codebook_size: number of speech tokens K (the speech tokenizer's `config.codebook_size`).
        audio_offset: token id of `<|audio_0|>`; `<|audio_i|>` has id `audio_offset + i`.
        begin_of_audio_id: token id of `<|begin_of_audio|>`.
        end_of_audio_id: token id of `<|end_of_audio|>`.
    """

    codebook_size: int
    audio_offset: int
    begin_of_audio_id: int
    end_of_audio_id: int

    @property
    def speech_token_range(self) -> range:
        return range(self.audio_offset, self.audio_offset + self.codebook_size)

    @property
    def vocab_size_needed(self) -> int:
        """The smallest embedding matrix that holds every speech token and marker."""
        return max(self.audio_offset + self.codebook_size, self.begin_of_audio_id + 1, self.end_of_audio_id + 1)

    def is_speech_token(self, token_id: int) -> bool:
        return self.audio_offset <= token_id < self.audio_offset + self.codebook_size

    def speech_to_token_ids(self, speech_ids: Iterable[int]) -> list[int]:
        """Speech tokenizer ids (0..K-1) -> LM token ids; out-of-range ids are an error, not a silent wrap."""
        out = []
        for s in speech_ids:
            s = int(s)
            if not 0 <= s < self.codebook_size:
                raise ValueError(f"speech id {s} outside the codebook [0, {self.codebook_size})")
            out.append(self.audio_offset + s)
        return out

    def token_to_speech_ids(self, token_ids: Iterable[int], strict: bool = False) -> list[int]:
        """LM token ids -> speech ids. Non-speech tokens (markers, text) are dropped, or raise with `strict`."""
        out = []
        for t in token_ids:
            t = int(t)
            if self.is_speech_token(t):
                out.append(t - self.audio_offset)
            elif strict:
                raise ValueError(f"token id {t} is not a speech token (speech ids are {self.speech_token_range})")
        return out

    def wrap(self, speech_ids: Iterable[int]) -> list[int]:
        """`<|begin_of_audio|>` + speech tokens + `<|end_of_audio|>`, as token ids."""
        return [self.begin_of_audio_id, *self.speech_to_token_ids(speech_ids), self.end_of_audio_id]

    def speech_to_text(self, speech_ids: Iterable[int]) -> str:
        """Speech ids as token strings (`<|audio_3|><|audio_17|>`), e.g. for a prompt/completion dataset."""
        return "".join(AUDIO_TOKEN_TEMPLATE.format(int(s)) for s in speech_ids)

    @classmethod
    def from_tokenizer(cls, tokenizer, codebook_size: int | None = None) -> SpeechVocab:
        """Read the speech vocabulary back from a tokenizer; a clear error if it has none or a broken one."""
        vocab = tokenizer.get_vocab()
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        first = AUDIO_TOKEN_TEMPLATE.format(0)
        missing = [t for t in (first, BEGIN_OF_AUDIO, END_OF_AUDIO) if t not in vocab]
        if missing:
            raise ValueError(
                f"tokenizer {name!r} lacks the speech tokens {missing}; extend it with "
                "modeling_speechtext.vocab.add_speech_tokens(model, tokenizer, codebook_size)"
            )
        if codebook_size is None:
            codebook_size = 0
            while AUDIO_TOKEN_TEMPLATE.format(codebook_size) in vocab:
                codebook_size += 1
        codebook_size = _check_codebook_size(codebook_size)
        offset = vocab[first]
        ids = [vocab.get(t) for t in speech_token_strings(codebook_size)]
        if ids != list(range(offset, offset + codebook_size)):
            raise ValueError(
                f"tokenizer {name!r}: speech tokens <|audio_0|>..<|audio_{codebook_size - 1}|> are missing or not "
                "contiguous ids; rebuild the vocabulary with add_speech_tokens"
            )
        return cls(codebook_size, offset, vocab[BEGIN_OF_AUDIO], vocab[END_OF_AUDIO])


def check_model_vocab(model, vocab: SpeechVocab) -> None:
    """Raise if the model's embedding matrix cannot hold the speech tokens (tokenizer extended, model not)."""
    n = model.get_input_embeddings().num_embeddings
    if n < vocab.vocab_size_needed:
        raise ValueError(
            f"model embeddings have {n} rows but the speech vocabulary needs {vocab.vocab_size_needed}; "
            "resize with add_speech_tokens(model, tokenizer, codebook_size)"
        )


def add_speech_tokens(
    model,
    tokenizer,
    codebook_size: int,
    *,
    mean_resizing: bool = True,
    pad_to_multiple_of: int | None = None,
) -> SpeechVocab:
    """Add `<|audio_0|>`..`<|audio_{K-1}|>`, `<|begin_of_audio|>`, `<|end_of_audio|>` to `tokenizer` (and `model`).

    Speech tokens get contiguous ids (one offset maps speech ids to token ids) and are *special* tokens, so
    `decode(..., skip_special_tokens=True)` gives the text side only. New embedding rows are initialised from the
    mean/covariance of the existing ones (`mean_resizing`), which keeps a pretrained LM's next-token
    distribution unchanged at the start of speech-text training. Idempotent: calling it again with the same
    `codebook_size` changes nothing; a different size is an error. `model=None` only extends the tokenizer.

    Returns:
        The `SpeechVocab` describing where the speech tokens sit.
    """
    codebook_size = _check_codebook_size(codebook_size)
    existing = tokenizer.get_vocab()
    audio = speech_token_strings(codebook_size)
    have_audio = [t in existing for t in audio]
    if any(have_audio):
        if not all(have_audio) or AUDIO_TOKEN_TEMPLATE.format(codebook_size) in existing:
            k = sum(1 for t in existing if t.startswith("<|audio_") and t.endswith("|>"))
            raise ValueError(
                f"tokenizer already has {k} speech tokens, which does not match codebook_size={codebook_size}"
            )
        new = []
    else:
        new = audio
    new += [m for m in (BEGIN_OF_AUDIO, END_OF_AUDIO) if m not in existing]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    vocab = SpeechVocab.from_tokenizer(tokenizer, codebook_size)  # also checks contiguity
    if model is not None:
        # len(tokenizer) can exceed the highest id when the base vocab has holes; size for both.
        needed = max(len(tokenizer), vocab.vocab_size_needed)
        if model.get_input_embeddings().num_embeddings < needed or pad_to_multiple_of:
            model.resize_token_embeddings(needed, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=mean_resizing)
        check_model_vocab(model, vocab)
    return vocab


__all__ = [
    "SpeechVocab",
    "add_speech_tokens",
    "check_model_vocab",
    "speech_token_strings",
]

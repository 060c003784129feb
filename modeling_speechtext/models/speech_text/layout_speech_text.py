"""The "streaming thoughts" layout of an assistant turn (PAPER.md §7), as token ids.

The assistant answers in text and speech at once: `text_chunk` text tokens, then `speech_chunk` speech tokens,
alternating, then the remaining speech once the text is done. Each speech chunk is wrapped in
`<|begin_of_audio|> ... <|end_of_audio|>` (the markers the LM saw around every speech span in pretraining), so one
token says "text stops here":

    T x13  <boa> S x26 <eoa>  T x13  <boa> S x26 <eoa>  T x5  <boa> S (the rest) <eoa>  <eos>

A text chunk of *fewer* than `text_chunk` tokens (zero included) means the text is finished: its speech chunk is
the last one and holds all the remaining speech. A full text chunk is followed by exactly `speech_chunk` speech
tokens, then text again. `build` lays a (text, speech) pair out this way, `parse` reads a generated turn back, and
`StreamingThoughtsLogitsProcessor` enforces the same grammar during generation, so the three cannot disagree.

Ids only (no tokenizer, no vocabulary class): this file is remote code of the speech-text model folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# what a token may be at the next position of a turn
TEXT, BEGIN_SPEECH, SPEECH, END_SPEECH, END = "text", "begin_speech", "speech", "end_speech", "end"


@dataclass(frozen=True)
class StreamingThoughtsLayout:
    """Where speech tokens sit in the vocabulary and how an assistant turn alternates text and speech.

    Args:
        audio_offset: token id of `<|audio_0|>`; speech tokens are `audio_offset .. audio_offset + codebook_size - 1`.
        codebook_size: number of speech tokens.
        begin_of_audio_id / end_of_audio_id: the markers around each speech chunk.
        eos_token_id: ends the turn (after the last speech chunk).
        text_chunk / speech_chunk: tokens per text and per speech chunk (the paper: 13 and 26).
    """

    audio_offset: int
    codebook_size: int
    begin_of_audio_id: int
    end_of_audio_id: int
    eos_token_id: int
    text_chunk: int = 13
    speech_chunk: int = 26

    def __post_init__(self):
        for name in ("text_chunk", "speech_chunk", "codebook_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"streaming thoughts layout: {name} must be a positive int, got {value!r}")
        special = {self.begin_of_audio_id, self.end_of_audio_id, self.eos_token_id}
        if len(special) < 3 or any(self.is_speech(t) for t in special):
            raise ValueError(
                "streaming thoughts layout: <|begin_of_audio|>, <|end_of_audio|> and eos must be three distinct "
                f"non-speech tokens, got {self.begin_of_audio_id}, {self.end_of_audio_id}, {self.eos_token_id}"
            )

    def is_speech(self, token_id: int) -> bool:
        return self.audio_offset <= token_id < self.audio_offset + self.codebook_size

    def is_text(self, token_id: int) -> bool:
        return not self.is_speech(token_id) and token_id not in (
            self.begin_of_audio_id, self.end_of_audio_id, self.eos_token_id
        )  # fmt: skip

    def build(self, text_ids: Sequence[int], speech_token_ids: Sequence[int], eos: bool = True) -> list[int]:
        """One assistant turn from its text token ids and its speech *token* ids (already offset).

        Speech must outlast the text's full chunks (each needs `speech_chunk` tokens, and the last chunk at least
        one): that holds for speech made from the text (~2 speech tokens per text token at 12.5 Hz), and a pair
        that breaks it is a ValueError, never a turn the logits processor could not generate.
        """
        text_ids, speech = list(text_ids), list(speech_token_ids)
        if any(not self.is_text(t) for t in text_ids):
            raise ValueError("streaming thoughts: the text of a turn holds a speech token or a marker")
        if not speech or any(not self.is_speech(t) for t in speech):
            raise ValueError("streaming thoughts: a turn needs speech tokens, and only speech tokens, as its speech")
        full = len(text_ids) // self.text_chunk
        if len(speech) < full * self.speech_chunk + 1:
            raise ValueError(
                f"streaming thoughts: {len(speech)} speech tokens are too few for {len(text_ids)} text tokens "
                f"({full} full text chunks need {full * self.speech_chunk} + at least 1)"
            )
        out: list[int] = []
        for k in range(full):
            out += text_ids[k * self.text_chunk : (k + 1) * self.text_chunk]
            out += [self.begin_of_audio_id, *speech[k * self.speech_chunk : (k + 1) * self.speech_chunk]]
            out.append(self.end_of_audio_id)
        out += [*text_ids[full * self.text_chunk :], self.begin_of_audio_id, *speech[full * self.speech_chunk :]]
        out.append(self.end_of_audio_id)
        return out + [self.eos_token_id] if eos else out

    def chunks(self, text_ids: Sequence[int], speech_token_ids: Sequence[int]) -> list[tuple[str, list[int]]]:
        """`build` as (modality, ids) pieces: "text" chunks and "speech" chunks (markers included), no eos."""
        pieces: list[tuple[str, list[int]]] = []
        for t in self.build(text_ids, speech_token_ids, eos=False):
            kind = "text" if self.is_text(t) else "speech"
            if (
                pieces
                and pieces[-1][0] == kind
                and not (kind == "speech" and pieces[-1][1][-1] == self.end_of_audio_id)
            ):
                pieces[-1][1].append(t)
            else:
                pieces.append((kind, [t]))
        return pieces

    def next_allowed(self, generated: Sequence[int], mode: str = "interleaved") -> str | tuple[str, ...]:
        """What may come next after `generated` (the turn so far): one of the kinds above, or several.

        `mode`: "interleaved" (the layout), "text" (text then eos, no speech), "speech" (one speech block, no text).
        A `generated` that breaks the grammar is a ValueError (the processor never lets that happen).
        """
        if mode == "text":
            if self.eos_token_id in generated:
                return END
            if any(not self.is_text(t) for t in generated):
                raise ValueError("text mode: the turn holds speech tokens or markers")
            return (TEXT, END)
        if mode not in ("interleaved", "speech"):
            raise ValueError(f"unknown output mode {mode!r}: expected interleaved, text or speech")
        state, count, final = "text", 0, False  # a speech-only turn is a finished (empty) text chunk
        if mode == "speech":
            state, final = "need_begin", True
        for t in generated:
            if state == "done":
                raise ValueError("streaming thoughts: tokens after the end of the turn")
            if state == "text":
                if self.is_text(t) and count < self.text_chunk:
                    count += 1
                elif t == self.begin_of_audio_id:
                    state, final, count = "speech", count < self.text_chunk, 0
                else:
                    raise ValueError(f"streaming thoughts: token {t} in a text slot")
            elif state == "need_begin":
                if t != self.begin_of_audio_id:
                    raise ValueError("speech mode: the turn must open with <|begin_of_audio|>")
                state, count = "speech", 0
            elif state == "speech":
                if self.is_speech(t) and (final or count < self.speech_chunk):
                    count += 1
                elif t == self.end_of_audio_id and count >= 1 and (final or count == self.speech_chunk):
                    state, count = ("end" if final else "text"), 0
                else:
                    raise ValueError(f"streaming thoughts: token {t} in a speech slot")
            elif state == "end":
                if t != self.eos_token_id:
                    raise ValueError("streaming thoughts: the turn must end with eos after its last speech chunk")
                state = "done"
        if state in ("end", "done"):
            return END
        if state == "need_begin":
            return BEGIN_SPEECH
        if state == "text":
            return BEGIN_SPEECH if count == self.text_chunk else (TEXT, BEGIN_SPEECH)
        if final:
            return SPEECH if count == 0 else (SPEECH, END_SPEECH)
        return SPEECH if count < self.speech_chunk else END_SPEECH

    def parse(self, token_ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """A generated turn -> (text token ids, speech ids 0..K-1), in order; markers and eos dropped.

        Lenient by design (a turn cut by `max_new_tokens` still gives what it has); `next_allowed` is the strict
        check.
        """
        text = [t for t in token_ids if self.is_text(t)]
        speech = [t - self.audio_offset for t in token_ids if self.is_speech(t)]
        return text, speech


__all__ = ["BEGIN_SPEECH", "END", "END_SPEECH", "SPEECH", "StreamingThoughtsLayout", "TEXT"]

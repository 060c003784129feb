"""`SpeechTextChat`: talk to the speech-text model, speech in, text and audio out, streamed.

Three things run at once, as in the paper's demo: the LM generates a streaming-thoughts turn (13 text tokens, 26
speech tokens, alternating) on one thread; a streamer splits each new id as it is sampled, handing text to the
caller and speech tokens to the speech decoder's chunked `decode_stream` on a second thread, which yields audio
once 10 tokens (0.8 s) have arrived and then in growing chunks; the caller's thread turns both into events. So the
first audio comes after ~13 text + 10 speech tokens, not after the whole answer.

Events (`ChatEvent.kind`): "text" (a text delta), "audio" (a float32 chunk at `sampling_rate`), "done" (the whole
reply: text, speech ids, audio, the new history, timings). Bad input gets a clear error (empty text, both or
neither of audio and text, a waveform that is not audio, a question longer than `max_question_seconds` or than
the LM's positions) or, for silence and for audio in which the speech tokenizer's own ASR hears no word, a polite
fixed reply instead of a made-up answer.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from modeling_speechtext.audio import AudioWarning, prepare_audio

NOT_HEARD = "Sorry, I could not hear a question. Could you say it again?"
_END = object()


@dataclass
class ChatEvent:
    """One thing the chat produced. `kind`: "text", "audio" or "done"; `refused`: why a fixed reply was given."""

    kind: str
    text: str = ""
    audio: np.ndarray | None = None
    sampling_rate: int = 16000
    speech_ids: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    refused: str | None = None


class _IdRouter(BaseStreamer):
    """A `generate` streamer that routes each new id: text -> the event queue, speech -> the decoder's queue.

    Written here rather than using `TextIteratorStreamer`: that one decodes everything to text, and the speech
    tokens must reach the decoder as ids while the text reaches the caller.
    """

    def __init__(self, layout, events: queue.Queue, speech: queue.Queue | None):
        self.layout, self.events, self.speech = layout, events, speech
        self.prompt_seen = False

    def put(self, value: torch.Tensor):
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            if self.layout.is_text(t):
                self.events.put(("text_id", t))
            elif self.layout.is_speech(t) and self.speech is not None:
                self.speech.put(t - self.layout.audio_offset)
            self.events.put(("turn_id", t))

    def end(self):
        if self.speech is not None:
            self.speech.put(_END)
        self.events.put(("lm_done", None))


class SpeechTextChat:
    """The speech-text model, its processor and the speech decoder, as one conversational engine.

    Args:
        model: a `SpeechTextForConditionalGeneration`.
        processor: its `SpeechTextProcessor`.
        decoder: a `SpeechDecoderModel` trained on the same speech tokenizer (checked).
        voice: the decoder's voice (its default when None).
        max_question_seconds: longer spoken questions are refused (the tokenizer's positions bound it too).
        max_new_tokens: the longest assistant turn.
        max_history_tokens: the prompt budget; the oldest turns are dropped to fit (default: the LM's positions
            minus `max_new_tokens`).
        system: an optional system message (the SFT data can carry one).
    """

    def __init__(self, model, processor, decoder, voice=None, max_question_seconds: float = 30.0,
                 max_new_tokens: int = 200, max_history_tokens: int | None = None, system: str | None = None):  # fmt: skip
        decoder.check_speech_tokenizer(model.config.speech_tokenizer_config)  # same codebook, same token rate
        if decoder.config.codebook_size != model.config.codebook_size:
            raise ValueError(f"the decoder has {decoder.config.codebook_size} speech tokens, the LM "
                             f"{model.config.codebook_size}: they do not speak the same tokens")  # fmt: skip
        self.model, self.processor, self.decoder = model.eval(), processor, decoder.eval()
        self.voice, self.system = voice, system
        self.max_question_seconds, self.max_new_tokens = max_question_seconds, max_new_tokens
        limit = getattr(model.config.text_config, "max_position_embeddings", None) or 10**9
        self.max_history_tokens = max_history_tokens or limit - max_new_tokens
        if self.max_history_tokens < 8:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {limit} positions")

    @property
    def sampling_rate(self) -> int:
        return int(self.decoder.config.sampling_rate)

    @classmethod
    def from_pretrained(cls, path: str | Path, decoder: str | Path | None = None, trust_remote_code: bool = False,
                        **kwargs) -> SpeechTextChat:  # fmt: skip
        """A pipeline run folder (its `sft`, `speech_tokenizer` and `speech_decoder` stages), or a saved
        `SpeechTextForConditionalGeneration` + processor (folder or Hub id) with `decoder` (folder or Hub id).
        Loaded in float32 (bf16 training leaves nothing behind that evaluation should inherit)."""
        from transformers import AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoProcessor, AutoTokenizer

        from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel
        from modeling_speechtext.models.speech_text.modeling_speech_text import SpeechTextForConditionalGeneration
        from modeling_speechtext.models.speech_text.processing_speech_text import SpeechTextProcessor
        from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

        run = Path(path)
        f32 = {"dtype": torch.float32}
        if (run / "sft").is_dir() and (run / "speech_tokenizer").is_dir():
            for stage in ("sft", "speech_tokenizer") + (() if decoder else ("speech_decoder",)):
                if not (run / stage / "config.json").is_file():
                    raise FileNotFoundError(f"{run / stage} holds no model: run that stage of the pipeline first")
            tokenizer = AutoTokenizer.from_pretrained(run / "sft")
            lm = AutoModelForCausalLM.from_pretrained(run / "sft", **f32)
            st = SpeechTokenizerModel.from_pretrained(run / "speech_tokenizer", **f32)
            fe = AutoFeatureExtractor.from_pretrained(run / "speech_tokenizer", trust_remote_code=True)
            model = SpeechTextForConditionalGeneration.from_parts(st, lm, tokenizer)
            processor = SpeechTextProcessor(feature_extractor=fe, tokenizer=tokenizer)
            decoder = decoder or run / "speech_decoder"
        else:
            if decoder is None:
                raise ValueError(f"{path} is not a pipeline run folder: pass decoder= (a speech decoder folder or id)")
            model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, **f32)
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        dec = SpeechDecoderModel.from_pretrained(decoder, **f32)
        return cls(model, processor, dec, **kwargs)

    # ------------------------------------------------------------------------------------------------ input
    def _user_message(self, audio, text, sampling_rate) -> tuple[dict, str | None]:
        """The user turn as a message with its speech as ids; or a reason to refuse it politely."""
        if (audio is None) == (text is None):
            raise ValueError("give the question as audio or as text (exactly one of them)")
        if text is not None:
            if not str(text).strip():
                raise ValueError("empty text question")
            return {"role": "user", "content": str(text).strip()}, None
        if isinstance(audio, (str, Path)):
            from modeling_speechtext.audio import load_audio

            wave = load_audio(str(audio), 16000)
        else:
            with warnings.catch_warnings():  # near-silence is answered below, not warned about
                warnings.simplefilter("ignore", AudioWarning)
                wave = prepare_audio(audio, sampling_rate, 16000, source="question audio")
        seconds = wave.shape[-1] / 16000
        if seconds > self.max_question_seconds:
            raise ValueError(f"the spoken question lasts {seconds:.1f} s, more than max_question_seconds="
                             f"{self.max_question_seconds:g}")  # fmt: skip
        if seconds < 0.08 or float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < 1e-3:
            return {}, "silence"  # below -60 dBFS: nothing was said
        feats = self.processor.feature_extractor(wave, sampling_rate=16000, return_tensors="pt")
        speech = [t - self.model.config.audio_offset for t in self.model.encode_speech(feats["input_features"])[0]]
        if not self.model.transcribe_speech([speech])[0].strip():
            return {}, "no words"  # the tokenizer's own ASR hears nothing: noise, hum, breath
        return {"role": "user", "content": [{"type": "speech", "speech_ids": speech}]}, None

    def _prompt(self, history: Sequence[dict], user: dict) -> tuple[torch.Tensor, list[dict]]:
        """Prompt ids of system + the newest history that fits + the user turn; the history kept."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        past = list(history)
        while True:
            messages = head + past + [user]
            text = self.processor.render(messages, add_generation_prompt=True)[0]
            ids = self.processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            if ids.shape[1] <= self.max_history_tokens:
                return ids, past
            if not past:
                raise ValueError(f"the question alone takes {ids.shape[1]} tokens, more than the prompt budget of "
                                 f"{self.max_history_tokens}: ask a shorter one")  # fmt: skip
            past = past[2:] if len(past) >= 2 else []  # drop the oldest exchange (user + assistant)

    # ------------------------------------------------------------------------------------------------ output
    def stream(self, audio=None, text=None, history: Sequence[dict] = (), sampling_rate: int = 16000,
               mode: str = "interleaved", **generate_kwargs) -> Iterator[ChatEvent]:  # fmt: skip
        """Answer one question, yielding events as they are produced (see the module docstring)."""
        t0 = time.perf_counter()
        user, refused = self._user_message(audio, text, sampling_rate)
        if refused:
            yield ChatEvent("text", NOT_HEARD, sampling_rate=self.sampling_rate)
            yield ChatEvent("done", NOT_HEARD, sampling_rate=self.sampling_rate, history=list(history), refused=refused,
                            timings={"total_s": time.perf_counter() - t0})  # fmt: skip
            return
        ids, past = self._prompt(history, user)
        layout = self.model.config.layout
        events: queue.Queue = queue.Queue()
        speech_q: queue.Queue | None = None if mode == "text" else queue.Queue()
        router = _IdRouter(layout, events, speech_q)
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False, **generate_kwargs}

        def run_lm():
            try:
                self.model.generate(input_ids=ids, mode=mode, streamer=router, **kwargs)
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                events.put(("error", err))
                router.end()

        def run_decoder():
            try:
                got = iter(speech_q.get, _END)
                first = next(got, None)
                if first is None:
                    return
                chain = (t for part in ([first], got) for t in part)
                for chunk in self.decoder.decode_stream(chain, voice=self.voice):
                    events.put(("audio", chunk.float().cpu().numpy()))
            except BaseException as err:  # noqa: BLE001
                events.put(("error", err))
            finally:
                events.put(("decoder_done", None))

        workers = [threading.Thread(target=run_lm, daemon=True)]
        if speech_q is not None:
            workers.append(threading.Thread(target=run_decoder, daemon=True))
        for w in workers:
            w.start()
        text_ids, turn, audio_chunks, shown, timings = [], [], [], "", {}
        pending = len(workers)
        tok = self.processor.tokenizer
        while pending:
            kind, value = events.get()
            if kind == "error":
                raise RuntimeError(f"chat generation failed: {value}") from value
            if kind in ("lm_done", "decoder_done"):
                pending -= 1
                if kind == "lm_done":
                    timings["lm_s"] = time.perf_counter() - t0
            elif kind == "turn_id":
                turn.append(value)
            elif kind == "text_id":
                text_ids.append(value)
                now = tok.decode(text_ids, skip_special_tokens=True)
                if now.endswith("\ufffd") or len(now) <= len(shown):  # half a character: wait for the rest
                    continue
                timings.setdefault("first_text_s", time.perf_counter() - t0)
                yield ChatEvent("text", now[len(shown) :], sampling_rate=self.sampling_rate)
                shown = now
            elif kind == "audio":
                timings.setdefault("first_audio_s", time.perf_counter() - t0)
                audio_chunks.append(value)
                yield ChatEvent("audio", audio=value, sampling_rate=self.sampling_rate)
        for w in workers:
            w.join()
        speech = [t - layout.audio_offset for t in turn if layout.is_speech(t)]
        reply = tok.decode([t for t in turn if t != layout.eos_token_id], skip_special_tokens=False)
        history_out = past + [user, {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        timings["total_s"] = time.perf_counter() - t0
        audio_out = np.concatenate(audio_chunks) if audio_chunks else None
        yield ChatEvent("done", tok.decode(text_ids, skip_special_tokens=True).strip(), audio=audio_out,
                        sampling_rate=self.sampling_rate, speech_ids=speech, history=history_out, timings=timings)  # fmt: skip

    def reply(self, audio=None, text=None, history: Sequence[dict] = (), sampling_rate: int = 16000,
              mode: str = "interleaved", **generate_kwargs) -> ChatEvent:  # fmt: skip
        """The non-streaming path: the whole turn, then the whole audio (`decoder.decode`); the "done" event."""
        t0 = time.perf_counter()
        user, refused = self._user_message(audio, text, sampling_rate)
        if refused:
            return ChatEvent("done", NOT_HEARD, sampling_rate=self.sampling_rate, history=list(history),
                             refused=refused, timings={"total_s": time.perf_counter() - t0})  # fmt: skip
        ids, past = self._prompt(history, user)
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": False, **generate_kwargs}
        out = self.model.generate(input_ids=ids, mode=mode, **kwargs)
        lm_s = time.perf_counter() - t0
        layout = self.model.config.layout
        turn = [t for t in out.sequences[0, out.prompt_length :].tolist()]
        turn = turn[: turn.index(layout.eos_token_id)] if layout.eos_token_id in turn else turn
        speech = out.speech_ids[0]
        audio_out = self.decoder.decode(speech, voice=self.voice).float().numpy() if speech else None
        tok = self.processor.tokenizer
        reply = tok.decode(turn, skip_special_tokens=False)
        history_out = past + [user, {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        return ChatEvent("done", self.processor.decode_turn(out.text_ids[0]), audio=audio_out,
                         sampling_rate=self.sampling_rate, speech_ids=speech, history=history_out,
                         timings={"lm_s": lm_s, "total_s": time.perf_counter() - t0})  # fmt: skip


__all__ = ["NOT_HEARD", "ChatEvent", "SpeechTextChat"]

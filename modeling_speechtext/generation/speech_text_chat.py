"""`SpeechTextChat`: talk to the speech-text model, speech in, text and audio out, streamed.

Three things run at once, as in the paper's demo: the LM generates a streaming-thoughts turn (13 text tokens, 26
speech tokens, alternating) on one thread; a streamer splits each new id as it is sampled, handing text to the
caller and speech tokens to the speech decoder's chunked `decode_stream` on a second thread, which yields audio
once 10 tokens (0.8 s) have arrived and then in growing chunks; the caller's thread turns both into events. So the
first audio comes after ~13 text + 10 speech tokens, not after the whole answer.

Events (`ChatEvent.kind`): "text" (a text delta), "audio" (a float32 chunk at `sampling_rate`), "done" (the whole
reply: text, speech ids, audio, the new history, timings). Bad input gets a clear error (empty text, both or
neither of audio and text, a waveform that is not audio, a question longer than `max_question_seconds` or than
the LM's positions) or, for silence, for a steady sound (noise, hum, a tone: `STATIONARY_SPREAD`) and for audio in
which the speech tokenizer's own ASR hears no word, a polite fixed reply instead of a made-up answer.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from modeling_speechtext.audio import load_audio, prepare_audio
from modeling_speechtext.constants import SAMPLE_RATE

NOT_HEARD = "Sorry, I could not hear a question. Could you say it again?"
STATIONARY_SPREAD = 0.3
"""Speech rises and falls with its syllables and pauses; steady noise does not. The standard deviation of the log
energy of 20 ms frames, measured: real recordings (30 FSDD digits / 30 VCTK p239 clips) min 0.83 / 1.89, with white
noise added at 10 dB SNR min 0.69 / 1.27, at 0 dB SNR min 0.38 / 0.54; TTS clips 3.4-6.8; white noise 0.07, a 50 Hz
hum 0.00, a 440 Hz tone 0.01; brown noise 1.46 and sparse clicks 8.5 are not caught. Why not the tokenizer's ASR
alone: at demo scale it reads whole sentences into white noise ("The went to the bedroom")."""
_END = object()


@dataclass
class ChatEvent:
    """One thing the chat produced. `kind`: "text", "audio" or "done"; `refused`: why a fixed reply was given;
    `truncated`: the turn hit `max_new_tokens` before its end (its open speech block is closed in the history)."""

    kind: str
    text: str = ""
    audio: np.ndarray | None = None
    sampling_rate: int = SAMPLE_RATE
    speech_ids: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    refused: str | None = None
    truncated: bool = False


def envelope_spread(wave: np.ndarray, frame: int = SAMPLE_RATE // 50) -> float:
    """Standard deviation of the log energy of `frame`-sample frames (see `STATIONARY_SPREAD`)."""
    w = np.asarray(wave, dtype=np.float64)
    n = len(w) // frame
    if n < 2:
        return 0.0
    return float(np.std(np.log(np.mean(w[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-10)))


class _IdRouter(BaseStreamer, StoppingCriteria):
    """A `generate` streamer that hands each new id to the caller's event queue and each speech id also to the
    decoder's queue (the decoder must not wait for the caller's thread); and
    the stopping criterion that ends generation once the caller has gone (closed or abandoned the stream).

    Written here rather than using `TextIteratorStreamer`: that one decodes everything to text, and the speech
    tokens must reach the decoder as ids while the text reaches the caller.
    """

    def __init__(self, layout, events: queue.Queue, speech: queue.Queue | None):
        self.layout, self.events, self.speech = layout, events, speech
        self.prompt_seen, self.ended = False, False
        self.stop = threading.Event()

    def put(self, value: torch.Tensor):
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            if self.layout.is_speech(t) and self.speech is not None:
                self.speech.put(t - self.layout.audio_offset)
            self.events.put(("id", t))  # the caller's thread keeps the turn and shows its text

    def end(self):
        if self.ended:  # generate's own end() and the error path may both call it
            return
        self.ended = True
        if self.speech is not None:
            self.speech.put(_END)
        self.events.put(("lm_done", None))

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


def load_run_model(run: str | Path, dtype=None):
    """(SpeechTextForConditionalGeneration, SpeechTextProcessor) assembled from a run's `sft` and
    `speech_tokenizer` stages (`dtype`: None keeps the saved one). Used by the chat and by `speechtext publish`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.models.speech_text.modeling_speech_text import SpeechTextForConditionalGeneration
    from modeling_speechtext.models.speech_text.processing_speech_text import SpeechTextProcessor
    from modeling_speechtext.models.speech_tokenizer.feature_extraction_speech_tokenizer import (
        SpeechTokenizerFeatureExtractor,
    )
    from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

    run = Path(run)
    for stage in ("sft", "speech_tokenizer"):
        if not (run / stage / "config.json").is_file():
            raise FileNotFoundError(f"{run / stage} holds no model: run that stage of the pipeline first")
    kw = {"dtype": dtype} if dtype is not None else {}
    tokenizer = AutoTokenizer.from_pretrained(run / "sft")
    lm = AutoModelForCausalLM.from_pretrained(run / "sft", **kw)
    st = SpeechTokenizerModel.from_pretrained(run / "speech_tokenizer", **kw)
    fe = SpeechTokenizerFeatureExtractor.from_pretrained(run / "speech_tokenizer")
    model = SpeechTextForConditionalGeneration.from_parts(st, lm, tokenizer)
    return model, SpeechTextProcessor(feature_extractor=fe, tokenizer=tokenizer)


def load_saved_model(path: str | Path, dtype=None):
    """(model, processor) of a saved `SpeechTextForConditionalGeneration` folder or Hub id, with this package's
    classes (no remote code runs)."""
    from transformers import AutoTokenizer

    from modeling_speechtext.models.speech_text.modeling_speech_text import SpeechTextForConditionalGeneration
    from modeling_speechtext.models.speech_text.processing_speech_text import SpeechTextProcessor
    from modeling_speechtext.models.speech_tokenizer.feature_extraction_speech_tokenizer import (
        SpeechTokenizerFeatureExtractor,
    )

    kw = {"dtype": dtype} if dtype is not None else {}
    model = SpeechTextForConditionalGeneration.from_pretrained(path, **kw)
    processor = SpeechTextProcessor(feature_extractor=SpeechTokenizerFeatureExtractor.from_pretrained(path),
                                    tokenizer=AutoTokenizer.from_pretrained(path))  # fmt: skip
    return model, processor


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
        speech_temperature / top_p: the speech is sampled (the text stays greedy; no top-k); `None` or 0: greedy
            speech, which at our scale repeats one token and runs to `max_new_tokens` (`logits_process_speech_text.py`).
        seed: seeds each answer's sampling (the same question gets the same answer) on a forked RNG, so the caller's
            torch RNG is left as it was; concurrent seeded answers of one engine take turns in the LM (the decoder
            still overlaps). `None` samples from torch's RNG without waiting.
    """

    def __init__(self, model, processor, decoder, voice=None, max_question_seconds: float = 30.0,
                 max_new_tokens: int = 200, max_history_tokens: int | None = None, system: str | None = None,
                 speech_temperature: float | None = 1.0, top_p: float = 1.0, seed: int | None = 0):  # fmt: skip
        decoder.check_speech_tokenizer(model.speech_tokenizer)  # same codebook size and token rate (and codes)
        if decoder.config.codebook_size != model.config.codebook_size:
            raise ValueError(f"the decoder has {decoder.config.codebook_size} speech tokens, the LM "
                             f"{model.config.codebook_size}: they do not speak the same tokens")  # fmt: skip
        decoder._voice_id(voice)  # an unknown voice is refused now, not in the decoder's thread mid-answer
        self.model, self.processor, self.decoder = model.eval(), processor, decoder.eval()
        self.voice, self.system = voice, system
        self.max_question_seconds, self.max_new_tokens = max_question_seconds, max_new_tokens
        self.positions = getattr(model.config.text_config, "max_position_embeddings", None) or 10**9
        self.max_history_tokens = max_history_tokens
        # top_k=0: transformers 5 would otherwise add top-k 50 to every sampled step
        self.decoding = {"do_sample": False} if not speech_temperature else {
            "do_sample": True, "temperature": speech_temperature, "top_p": top_p, "top_k": 0}  # fmt: skip
        self.seed = seed
        self._rng_lock = threading.Lock()
        self._budget(max_new_tokens)  # raises when max_new_tokens leaves no room

    def _budget(self, max_new_tokens: int) -> int:
        """Prompt tokens allowed: the LM's positions minus the answer, and at most `max_history_tokens`."""
        budget = self.positions - max_new_tokens
        if self.max_history_tokens is not None:
            budget = min(budget, self.max_history_tokens)
        if budget < 8:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {self.positions} "
                             "positions")  # fmt: skip
        return budget

    @property
    def sampling_rate(self) -> int:
        return int(self.decoder.config.sampling_rate)

    @classmethod
    def from_pretrained(cls, path: str | Path, decoder: str | Path | None = None, **kwargs) -> SpeechTextChat:
        """A pipeline run folder (its `sft`, `speech_tokenizer` and `speech_decoder` stages), or a saved
        `SpeechTextForConditionalGeneration` + processor (folder or Hub id) with `decoder` (folder or Hub id).
        This package's own classes load them (no remote code runs). Loaded in float32: bf16 training leaves
        nothing behind that inference should inherit."""
        from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

        run = Path(path)
        if (run / "sft").is_dir() and (run / "speech_tokenizer").is_dir():
            if not decoder and not (run / "speech_decoder" / "config.json").is_file():
                raise FileNotFoundError(
                    f"{run / 'speech_decoder'} holds no model: run that stage of the pipeline first"
                )
            model, processor = load_run_model(run, torch.float32)
            decoder = decoder or run / "speech_decoder"
        else:
            if decoder is None:
                raise ValueError(f"{path} is not a pipeline run folder: pass decoder= (a speech decoder folder or id)")
            model, processor = load_saved_model(path, torch.float32)
        dec = SpeechDecoderModel.from_pretrained(decoder, dtype=torch.float32)
        return cls(model, processor, dec, **kwargs)

    # ------------------------------------------------------------------------------------------------ input
    def _user_message(self, audio, text, sampling_rate) -> tuple[dict, str | None]:
        """The user turn as a message with its speech as ids; or a reason to refuse it politely."""
        if (audio is None) == (text is None):
            raise ValueError("give the question as audio or as text (exactly one of them)")
        if text is not None:
            if not isinstance(text, str):
                raise ValueError(f"the text question must be a string, not {type(text).__name__}")
            if not str(text).strip():
                raise ValueError("empty text question")
            control = [t for t in self.processor.tokenizer.get_added_vocab() if t in str(text)]
            if control:  # they would be read as role, speech or layout markers, not as the user's words
                raise ValueError(f"the text question holds control tokens {control[:3]}: type words only")
            return {"role": "user", "content": str(text).strip()}, None
        # (near-silence may warn: `warnings.catch_warnings` is process-global and not safe across the app's threads)
        if isinstance(audio, (str, Path)):
            wave = load_audio(str(audio), SAMPLE_RATE)
        else:
            wave = prepare_audio(audio, sampling_rate, SAMPLE_RATE, source="question audio")
        seconds = wave.shape[-1] / SAMPLE_RATE
        if seconds > self.max_question_seconds:
            raise ValueError(f"the spoken question lasts {seconds:.1f} s, more than max_question_seconds="
                             f"{self.max_question_seconds:g}")  # fmt: skip
        if seconds < 0.08 or float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < 1e-3:
            return {}, "silence"  # below -60 dBFS: nothing was said
        if envelope_spread(wave) < STATIONARY_SPREAD:
            return {}, "no speech"  # a steady sound: noise, hum, a tone
        feats = self.processor.feature_extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        speech = [t - self.model.config.audio_offset for t in self.model.encode_speech(feats["input_features"])[0]]
        if not self.model.transcribe_speech([speech])[0].strip():
            return {}, "no words"  # the tokenizer's own ASR hears nothing: noise, hum, breath
        return {"role": "user", "content": [{"type": "speech", "speech_ids": speech}]}, None

    def _prompt(self, history: Sequence[dict], user: dict, max_new_tokens: int) -> tuple[torch.Tensor, list[dict]]:
        """Prompt ids of system + the newest history that fits + the user turn; the history kept. Older turns go
        first, whole exchanges at a time (the kept history always starts with a user turn)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        budget = self._budget(max_new_tokens)
        past = list(history)
        while True:
            text, clips = self.processor.render(head + past + [user], add_generation_prompt=True)
            if clips:
                raise ValueError("history turns must hold speech as speech_ids (as the chat's own history does), "
                                 "not raw audio")  # fmt: skip
            ids = self.processor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            if ids.shape[1] <= budget:
                return ids, past
            if not past:
                raise ValueError(f"the question alone takes {ids.shape[1]} tokens, more than the prompt budget of "
                                 f"{budget}: ask a shorter one")  # fmt: skip
            past = past[1:]
            while past and past[0].get("role") != "user":
                past = past[1:]

    def _assistant_message(self, turn: list[int]) -> tuple[dict, bool]:
        """The generated turn as a history message, exactly its tokens; a turn cut by `max_new_tokens` gets its
        open speech block closed (a layout the model saw in training), and is flagged truncated."""
        lay = self.model.config.layout
        truncated = lay.eos_token_id not in turn
        turn = turn[: turn.index(lay.eos_token_id)] if not truncated else list(turn)
        if truncated and turn and (lay.is_speech(turn[-1]) or turn[-1] == lay.begin_of_audio_id):
            turn = turn[:-1] if turn[-1] == lay.begin_of_audio_id else turn + [lay.end_of_audio_id]
        text = self.processor.tokenizer.decode(turn, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return {"role": "assistant", "content": [{"type": "text", "text": text}]}, truncated

    # ------------------------------------------------------------------------------------------------ output
    def _start(self, audio, text, history, sampling_rate, mode, generate_kwargs):
        """Shared by `stream` and `reply`: checks, the user turn (or a refusal), the prompt, generate's kwargs."""
        if mode not in ("interleaved", "text", "speech"):
            raise ValueError(f"unknown output mode {mode!r}: expected interleaved, text or speech")
        user, refused = self._user_message(audio, text, sampling_rate)
        kwargs = {"max_new_tokens": self.max_new_tokens, **self.decoding, **generate_kwargs}
        if refused:
            return None, None, refused, kwargs
        ids, past = self._prompt(history, user, int(kwargs["max_new_tokens"]))
        return ids, past + [user], None, kwargs

    @contextlib.contextmanager
    def _seeded(self):
        """The answer's sampling seeded, on a fork of torch's RNG (the caller's RNG state comes back after)."""
        if self.seed is None:
            yield
            return
        # torch's generator is process-global and transformers samples with it: concurrent seeded answers (the
        # Space serves two at a time) take turns, or their draws would interleave and neither would be reproducible
        with self._rng_lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            yield

    def _refusal(self, history, refused, t0) -> ChatEvent:
        return ChatEvent("done", NOT_HEARD, sampling_rate=self.sampling_rate, history=list(history), refused=refused,
                         timings={"total_s": time.perf_counter() - t0})  # fmt: skip

    def stream(self, audio=None, text=None, history: Sequence[dict] = (), sampling_rate: int = SAMPLE_RATE,
               mode: str = "interleaved", **generate_kwargs) -> Iterator[ChatEvent]:  # fmt: skip
        """Answer one question, yielding events as they are produced (see the module docstring). Closing or
        abandoning the iterator stops the LM and the decoder (nothing keeps running behind the next question)."""
        t0 = time.perf_counter()
        ids, history_in, refused, kwargs = self._start(audio, text, history, sampling_rate, mode, generate_kwargs)
        if refused:
            yield ChatEvent("text", NOT_HEARD, sampling_rate=self.sampling_rate)
            yield self._refusal(history, refused, t0)
            return
        layout = self.model.config.layout
        events: queue.Queue = queue.Queue()
        speech_q: queue.Queue | None = None if mode == "text" else queue.Queue()
        router = _IdRouter(layout, events, speech_q)
        stopping = StoppingCriteriaList([router, *kwargs.pop("stopping_criteria", [])])

        def run_lm():
            try:
                with self._seeded():
                    self.model.generate(input_ids=ids, mode=mode, streamer=router, stopping_criteria=stopping,
                                        **kwargs)  # fmt: skip
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                events.put(("error", err))
            finally:
                router.end()

        def run_decoder():
            try:
                got = iter(speech_q.get, _END)
                first = next(got, None)
                if first is None:
                    return
                chain = (t for part in ([first], got) for t in part)
                for chunk in self.decoder.decode_stream(chain, voice=self.voice):
                    if router.stop.is_set():
                        return
                    events.put(("audio", chunk.float().cpu().numpy()))
            except BaseException as err:  # noqa: BLE001
                router.stop.set()
                events.put(("error", err))
            finally:
                events.put(("decoder_done", None))

        workers = [threading.Thread(target=run_lm, daemon=True)]
        if speech_q is not None:
            workers.append(threading.Thread(target=run_decoder, daemon=True))
        tok = self.processor.tokenizer
        text_ids, turn, audio_chunks, shown, timings, errors = [], [], [], "", {}, []
        try:
            for w in workers:
                w.start()
            pending = len(workers)
            while pending:
                kind, value = events.get()
                if kind == "error":
                    errors.append(value)
                    router.stop.set()
                elif kind in ("lm_done", "decoder_done"):
                    pending -= 1
                    if kind == "lm_done":
                        timings["lm_s"] = time.perf_counter() - t0
                        now = tok.decode(text_ids, skip_special_tokens=True)
                        if len(now) > len(shown):  # flush what waited for the rest of a character
                            yield ChatEvent("text", now[len(shown) :], sampling_rate=self.sampling_rate)
                            shown = now
                elif kind == "id":
                    turn.append(value)
                    if not layout.is_text(value):
                        continue
                    text_ids.append(value)
                    now = tok.decode(text_ids, skip_special_tokens=True)
                    if now.endswith("\ufffd") or len(now) <= len(shown):  # half a character: wait for the rest
                        continue
                    timings.setdefault("first_text_s", time.perf_counter() - t0)
                    yield ChatEvent("text", now[len(shown) :], sampling_rate=self.sampling_rate)
                    shown = now
                elif kind == "audio" and not errors:
                    timings.setdefault("first_audio_s", time.perf_counter() - t0)
                    audio_chunks.append(value)
                    yield ChatEvent("audio", audio=value, sampling_rate=self.sampling_rate)
        finally:  # also when the caller stops iterating: stop both workers and wait for them
            router.stop.set()
            if speech_q is not None:
                speech_q.put(_END)
            for w in workers:
                if w.ident is not None:  # started
                    w.join(timeout=60)
        while not events.empty():
            kind, value = events.get()
            if kind == "error":
                errors.append(value)
        if errors:
            raise RuntimeError(f"chat generation failed: {errors[0]}") from errors[0]
        message, truncated = self._assistant_message(turn)
        timings["total_s"] = time.perf_counter() - t0
        yield ChatEvent("done", shown.strip(), audio=np.concatenate(audio_chunks) if audio_chunks else None,
                        sampling_rate=self.sampling_rate, speech_ids=[t - layout.audio_offset for t in turn
                        if layout.is_speech(t)], history=history_in + [message], timings=timings,
                        truncated=truncated)  # fmt: skip

    def reply(self, audio=None, text=None, history: Sequence[dict] = (), sampling_rate: int = SAMPLE_RATE,
              mode: str = "interleaved", **generate_kwargs) -> ChatEvent:  # fmt: skip
        """The non-streaming path: the whole turn, then the whole audio (`decoder.decode`); the "done" event."""
        t0 = time.perf_counter()
        ids, history_in, refused, kwargs = self._start(audio, text, history, sampling_rate, mode, generate_kwargs)
        if refused:
            return self._refusal(history, refused, t0)
        with self._seeded():
            out = self.model.generate(input_ids=ids, mode=mode, **kwargs)
        lm_s = time.perf_counter() - t0
        speech = out.speech_ids[0]
        audio_out = self.decoder.decode(speech, voice=self.voice).float().cpu().numpy() if speech else None
        message, truncated = self._assistant_message(out.sequences[0, out.prompt_length :].tolist())
        text_out = self.processor.tokenizer.decode(out.text_ids[0], skip_special_tokens=True).strip()
        return ChatEvent("done", text_out, audio=audio_out, sampling_rate=self.sampling_rate, speech_ids=speech,
                         history=history_in + [message], timings={"lm_s": lm_s, "total_s": time.perf_counter() - t0},
                         truncated=truncated)  # fmt: skip


__all__ = ["NOT_HEARD", "STATIONARY_SPREAD", "ChatEvent", "SpeechTextChat", "envelope_spread"]

"""`speechtext chat`: ask the dialogue model a question, spoken or typed; print its text answer, save its speech.

    speechtext chat --run runs/demo --audio question.wav --output answer.wav
    speechtext chat --run runs/demo --text "Mary went to the kitchen. Where is Mary?" --output answer.wav
    speechtext chat --model user/speechtext-chat --decoder user/speechtext-decoder --audio q.wav

The text is printed as it is generated; the audio is written once the turn ends (it is produced in chunks while
the text is still coming: see `SpeechTextChat.stream`). `--interactive` keeps a multi-turn conversation going,
one typed question (or a path to a .wav) per line.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="a pipeline run folder (uses its sft, speech_tokenizer and speech_decoder)")
    where.add_argument("--model", help="a saved SpeechTextForConditionalGeneration + processor (folder or Hub id)")
    parser.add_argument("--decoder", help="speech decoder folder or Hub id (default: the run's speech_decoder)")
    question = parser.add_mutually_exclusive_group()
    question.add_argument("--audio", help="the spoken question (wav, flac, mp3, ...)")
    question.add_argument("--text", help="the typed question")
    question.add_argument("--interactive", action="store_true", help="read questions from stdin, keep the history")
    parser.add_argument("--output", help="write the spoken answer here (.wav)")
    parser.add_argument("--mode", choices=("interleaved", "text", "speech"), default="interleaved")
    parser.add_argument("--voice", help="the decoder's voice (default: its default voice)")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--system", help="a system message")
    parser.add_argument("--speech_temperature", type=float, default=1.0,
                        help="sampling temperature of the speech (text stays greedy); 0: greedy speech")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)


def _answer(chat, history, audio=None, text=None, mode="interleaved", output=None, out=print):
    import soundfile as sf

    done = None
    for event in chat.stream(audio=audio, text=text, history=history, mode=mode):
        if event.kind == "text":
            out(event.text, end="", flush=True)
        elif event.kind == "done":
            done = event
    out("")
    if done.refused:
        out(f"[no answer: {done.refused} in the question; nothing written]")
    elif done.truncated:
        out(f"[the answer hit --max_new_tokens={chat.max_new_tokens} before its end]")
    if output and done.audio is not None:
        sf.write(output, done.audio, done.sampling_rate)
        out(f"[{len(done.audio) / done.sampling_rate:.2f} s of speech -> {output}; "
            f"first text {done.timings.get('first_text_s', 0):.2f} s, first audio "
            f"{done.timings.get('first_audio_s', 0):.2f} s, total {done.timings['total_s']:.2f} s]")  # fmt: skip
    return done


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

    if not (args.audio or args.text is not None or args.interactive):
        raise ValueError("ask something: --audio, --text or --interactive")
    if args.audio and not Path(args.audio).is_file():
        raise FileNotFoundError(f"{args.audio}: no such audio file")
    chat = SpeechTextChat.from_pretrained(
        args.run or args.model, decoder=args.decoder, voice=args.voice, max_new_tokens=args.max_new_tokens,
        system=args.system, speech_temperature=args.speech_temperature, seed=args.seed,
    )  # fmt: skip
    if not args.interactive:
        _answer(chat, [], args.audio, args.text, args.mode, args.output)
        return 0
    history = []
    for n, line in enumerate(sys.stdin):
        line = line.strip()
        if not line:
            continue
        spoken = line.endswith((".wav", ".flac", ".mp3")) and Path(line).is_file()
        output = f"{Path(args.output).with_suffix('')}_{n}.wav" if args.output else None
        done = _answer(chat, history, line if spoken else None, None if spoken else line, args.mode, output)
        history = done.history
    return 0


__all__ = ["add_arguments", "run"]

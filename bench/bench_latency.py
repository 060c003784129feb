"""Latency of the streaming chat against the non-streaming path, on spoken bAbI questions, in one process.

For each spoken question (story + question, one waveform, from the run's held-out-voice spoken QA set): the
streamed answer (`SpeechTextChat.stream`: LM and decoder overlap, audio in chunks) and the non-streaming one
(`SpeechTextChat.reply`: the whole turn, then the whole audio), alternating which goes first. Reported: time to
the first text, to the first audio chunk, total, and the real-time factor (seconds of compute per second of
speech answered); the goal of issue 22 is first audio <= 25% of the non-streaming total.

    python bench/bench_latency.py --run runs/demo --questions 12 --output runs/demo/bench_latency
    python bench/bench_latency.py --run runs/demo --threads 1 --speech_temperature 0   # long (greedy) answers

On a 2-core CPU give each of the two workers one core (`--threads 1`): with torch's default both run 2 OpenMP
threads and oversubscribe the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def questions(run: Path, n: int) -> list[np.ndarray]:
    from modeling_speechtext.audio import load_audio

    folder = run / "spoken_qa" / "unseen_voices"
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()[:n]]
    return [np.concatenate([load_audio(str(folder / p)) for p in [*r["context_audio"], r["question_audio"]]])
            for r in rows]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pipeline run folder with the sft stage done")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max_new_tokens", type=int, default=120)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--speech_temperature", type=float, default=1.0,
                        help="0: greedy speech (at demo scale it runs to max_new_tokens: long answers)")  # fmt: skip
    parser.add_argument("--output", help="folder for latency.json and latency.png (default: <run>/bench_latency)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from modeling_speechtext.generation.speech_text_chat import SpeechTextChat

    run = Path(args.run)
    chat = SpeechTextChat.from_pretrained(run, max_new_tokens=args.max_new_tokens,
                                          speech_temperature=args.speech_temperature)  # fmt: skip
    clips = questions(run, args.questions)
    chat.reply(audio=clips[0])  # warm-up (first-call allocations)
    rows = []
    for i, clip in enumerate(clips):
        results = {}
        for path in ("stream", "offline") if i % 2 == 0 else ("offline", "stream"):
            start = time.perf_counter()
            if path == "stream":
                done = [e for e in chat.stream(audio=clip)][-1]
            else:
                done = chat.reply(audio=clip)
            total = time.perf_counter() - start
            speech_s = 0.0 if done.audio is None else len(done.audio) / done.sampling_rate
            results[path] = {**done.timings, "total_s": total, "speech_s": speech_s, "refused": done.refused,
                             "rtf": total / speech_s if speech_s else None, "text": done.text}  # fmt: skip
        rows.append({"question_s": len(clip) / 16000, **results})
        s, o = results["stream"], results["offline"]
        print(f"q{i}: {rows[-1]['question_s']:.1f} s question | stream first text {s.get('first_text_s', 0):.2f} s, "
              f"first audio {s.get('first_audio_s', float('nan')):.2f} s, total {s['total_s']:.2f} s | offline "
              f"total {o['total_s']:.2f} s | {s['speech_s']:.1f} s of speech | {s['text'][:50]!r}")  # fmt: skip
    ok = [r for r in rows if "first_audio_s" in r["stream"] and "first_text_s" in r["stream"]]
    if not ok:
        raise SystemExit("no question got a spoken answer (all refused or text only): nothing to time")
    med = statistics.median
    summary = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count(), "questions": len(rows),
        "with_audio": len(ok), "max_new_tokens": args.max_new_tokens, "speech_temperature": args.speech_temperature,
        "stream_first_text_s": med([r["stream"]["first_text_s"] for r in ok]),
        "stream_first_audio_s": med([r["stream"]["first_audio_s"] for r in ok]),
        "stream_total_s": med([r["stream"]["total_s"] for r in ok]),
        "offline_total_s": med([r["offline"]["total_s"] for r in ok]),
        "first_audio_over_offline": med([r["stream"]["first_audio_s"] / r["offline"]["total_s"] for r in ok]),
        "stream_rtf": med([r["stream"]["rtf"] for r in ok]), "offline_rtf": med([r["offline"]["rtf"] for r in ok]),
        "answer_speech_s": med([r["stream"]["speech_s"] for r in ok]),
    }  # fmt: skip
    out = Path(args.output or run / "bench_latency")
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    labels = ["stream: first text", "stream: first audio", "stream: total", "offline: total (= first audio)"]
    values = [summary[k] for k in ("stream_first_text_s", "stream_first_audio_s", "stream_total_s", "offline_total_s")]
    ax.barh(labels, values, color=["#88c", "#c84", "#888", "#444"])
    ax.set_xlabel("seconds (median over questions)")
    ax.set_title(f"chat latency, {summary['cpu'][:40]}, {summary['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=120)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

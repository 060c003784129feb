"""Load on the Space: N concurrent clients asking spoken questions for a while, against the app on loopback.

Each client (a `gradio_client.Client` in its own thread) asks the run's held-out-voice spoken questions in turn
through the `/chat` endpoint until the time is up. Reported: requests, errors, latency percentiles (p50 / p95 /
max, seconds from submit to the whole answer), answers per minute, and the app's queue settings. No baseline
ratio: the number is the app's own throughput on this machine (one answer's compute is bench_latency.py's).

    python bench/bench_space_load.py --run runs/demo --clients 8 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=2, help="the app's concurrency limit")
    parser.add_argument("--output", help="JSON file (default: <run>/bench_space_load.json)")
    args = parser.parse_args()
    from app import build_app, load_chat
    from gradio_client import Client, handle_file

    run = Path(args.run)
    folder = run / "spoken_qa" / "unseen_voices"
    questions = [str(folder / json.loads(line)["question_audio"]) for line in
                 (folder / "manifest.jsonl").read_text().splitlines()[:20]]  # fmt: skip
    app = build_app(load_chat(str(run)), concurrency=args.concurrency)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    latencies, errors, lock = [], [], threading.Lock()
    stop = time.perf_counter() + args.seconds

    def client(k: int):
        c = Client(url, verbose=False)
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                c.predict(api_name="/clear")  # one-turn questions: the session's history would grow the prompts
                out = c.predict(handle_file(questions[i % len(questions)]), "", api_name="/chat")
                ok = out[2] is not None and "total" in out[3]
            except Exception as err:  # noqa: BLE001 - counted, the load goes on
                ok, out = False, repr(err)
            with lock:
                (latencies if ok else errors).append(time.perf_counter() - t0 if ok else str(out)[:200])
            i += args.clients

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    app.close()
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
    report = {
        "clients": args.clients, "seconds": round(wall, 1), "concurrency_limit": args.concurrency,
        "answers": len(lat), "errors": len(errors), "error_examples": errors[:3],
        "p50_s": pct(0.5), "p95_s": pct(0.95), "max_s": lat[-1] if lat else None,
        "mean_s": statistics.mean(lat) if lat else None, "answers_per_minute": 60 * len(lat) / wall,
        "cpu_count": os.cpu_count(),
    }  # fmt: skip
    out = Path(args.output or run / "bench_space_load.json")
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

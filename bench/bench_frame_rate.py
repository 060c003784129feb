"""12.5 Hz vs 25 Hz vs 50 Hz speech tokens at the `demo` scale, as the paper's Table 1 (WER, usage, bitrate).

The same recipe and budget (the demo preset's steps) three times, changing only `pooling_kernel_size` (4, 2, 1).
The baseline is the paper's choice, 12.5 Hz; the table prints each rate's WER and its ratio to the baseline.

    python bench/bench_frame_rate.py --run_dir runs/demo --output_dir runs/frame_rate [--max_steps 600]

Each run takes the demo tokenizer's minutes (more at 50 Hz: the layers after the quantizer see 4x the frames).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="a run folder with speech_corpus/ and text_tokenizer/")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--kernels", type=int, nargs="+", default=[4, 2, 1], help="pooling kernels (4 = 12.5 Hz)")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--num_threads", type=int, default=None)
    args = parser.parse_args()

    import logging

    from modeling_speechtext.pipeline.presets import load_preset
    from recipes.train_speech_tokenizer import run_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.output_dir)
    base = dict(load_preset(args.preset)["speech_tokenizer"])
    base["feature_cache_dir"] = str(out / "cache")  # features do not depend on the pooling: compute them once
    if args.max_steps:
        base["max_steps"] = args.max_steps
    if args.num_threads:
        base["num_threads"] = args.num_threads
    rows = []
    for k in args.kernels:
        folder = out / f"pool{k}"
        metrics_file = folder / "metrics.json"
        if not metrics_file.is_file():  # resumable: a finished rate is not retrained
            run_stage({**base, "pooling_kernel_size": k}, folder, Path(args.run_dir))
        m = json.loads(metrics_file.read_text())
        rows.append((k, m))
    baseline = next((m for k, m in rows if k == 4), rows[0][1])
    header = f"{'rate':>8} {'codes':>6} {'bit/s':>6} {'WER val':>8} {'WER unseen':>10} {'usage':>6} {'ratio WER':>9}"
    lines = [header]
    for _, m in rows:
        lines.append(
            f"{m['frame_rate']:>6g}Hz {m['codebook_size']:>6} {m['bitrate']:>6.0f} {m['validation_wer']:>8.1%} "
            f"{m['test_unseen_voices_wer']:>10.1%} {m['validation_codebook_usage']:>6.1%} "
            f"{m['validation_wer'] / max(baseline['validation_wer'], 1e-9):>8.2f}x"
        )
    table = "\n".join(lines)
    print(table)
    (out / "frame_rate_table.txt").write_text(table + "\n")
    (out / "frame_rate.json").write_text(json.dumps({str(k): m for k, m in rows}, indent=2))


if __name__ == "__main__":
    main()

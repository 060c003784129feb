"""What the decoder diagnostics share: their command line, the decoder + ASR judge, and the sampled eval rows."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def add_common_arguments(parser: argparse.ArgumentParser, samples: int) -> None:
    parser.add_argument("--run_dir", required=True, help="run folder with speech_tokenizer/ and the eval splits")
    parser.add_argument("--decoder", default=None, help="default: <run_dir>/speech_decoder")
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="where to write the JSON report")


def load_decoder_and_judge(args: argparse.Namespace):
    """`(decoder, tokenizer, feature_extractor)`: the decoder under study and the tokenizer whose ASR judges it."""
    import torch

    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer
    from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel

    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    decoder = SpeechDecoderModel.from_pretrained(args.decoder or run / "speech_decoder").eval()
    tokenizer, fe = load_speech_tokenizer(run / "speech_tokenizer")
    return decoder, tokenizer, fe


def sample_rows(splits, split: str, n: int, seed: int) -> tuple[list[dict], object]:
    """`n` utterances with tokens of `split`, shuffled with `seed`, and the split's audio."""
    rows, audio = splits[split]
    rows = [r for r in rows if len(r["speech_ids"]) > 0]
    random.Random(seed).shuffle(rows)
    return rows[:n], audio


def finish_report(report: dict, start: float, output: str | None) -> None:
    """Stamp the elapsed seconds, print the report and write it to `output` (JSON) when given."""
    import json
    import time

    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))
    if output:
        Path(output).write_text(json.dumps(report, indent=2) + "\n")

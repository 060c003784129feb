"""The builder's command line: flags -> an `InterleavedConfig` dict -> a build, with a short report.

Lives with the builder (not in `modeling_speechtext/cli/`) so that `python -m dataset_builders.interleaved` and
`accelerate launch -m dataset_builders.interleaved` need nothing from the layers above; `speechtext interleave`
wraps these functions. Nothing heavy (torch, datasets) is imported until a build runs.
"""

from __future__ import annotations

import argparse
import json

# CLI flag -> (InterleavedConfig key, or "span_length.<key>" / "synthesis.<key>")
_NESTED = {
    "span_distribution": "span_length.distribution",
    "span_mean": "span_length.mean",
    "span_min": "span_length.min",
    "span_max": "span_length.max",
    "temperature": "synthesis.temperature",
    "top_k": "synthesis.top_k",
    "top_p": "synthesis.top_p",
    "batch_size": "synthesis.batch_size",
    "max_tokens_per_char": "synthesis.max_tokens_per_char",
}

# what the main process prints after a build
_REPORT_KEYS = (
    "documents",
    "spans_speech",
    "eta_requested",
    "eta_achieved_words",
    "speech_to_text_token_ratio",
    "text_tokens",
    "speech_tokens",
    "tokens_per_second_per_worker",
    "hub_url",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag defaults to None, so `config_from_args` can tell a given flag from the YAML's value."""
    parser.add_argument(
        "--config", help="a YAML of InterleavedConfig keys (e.g. recipes/configs/demo/interleaved.yaml)"
    )
    parser.add_argument("--t2t", help="text-to-token model folder")
    parser.add_argument(
        "--text", dest="source", help="save_to_disk folder, text/jsonl/parquet files, or Hub dataset id"
    )
    parser.add_argument("--output_dir", help="where data/*.parquet, README.md, stats.json go")
    parser.add_argument("--eta", type=float, help="fraction of words turned into speech (default 0.3)")
    parser.add_argument("--granularity", choices=["word", "sentence"])
    parser.add_argument("--span_distribution", choices=["poisson", "geometric", "uniform", "fixed"])
    parser.add_argument("--span_mean", type=float, help="mean units (words/sentences) per speech span")
    parser.add_argument("--span_min", type=int)
    parser.add_argument("--span_max", type=int)
    parser.add_argument("--split", help="split of the source (default train)")
    parser.add_argument("--hub_config", help="config name of a Hub dataset")
    parser.add_argument("--text_column")
    parser.add_argument("--id_column")
    parser.add_argument("--sample_by", choices=["line", "paragraph", "document"], help=".txt: one document per ...")
    parser.add_argument("--max_documents", type=int)
    parser.add_argument("--documents_per_shard", type=int)
    parser.add_argument("--chunk_documents", type=int, help="documents synthesized together")
    parser.add_argument("--num_proc", type=int, help="local worker processes")
    parser.add_argument("--num_threads", type=int, help="torch threads per worker")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top_k", type=int)
    parser.add_argument("--top_p", type=float)
    parser.add_argument("--batch_size", type=int, help="texts per generate() call")
    parser.add_argument("--max_tokens_per_char", type=float, help="runaway guard of the synthesizer")
    parser.add_argument("--overwrite", action="store_true", default=None, help="rebuild if output_dir differs")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="upload the dataset to this Hub repo")
    parser.add_argument("--private", action="store_true", default=None)


def config_from_args(args: argparse.Namespace) -> dict:
    """YAML values first, then every flag given on the command line."""
    values: dict = {}
    if args.config:
        import yaml  # a plain mapping of InterleavedConfig keys; no preset machinery (that layer sits above)

        with open(args.config) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{args.config}: expected a mapping at the top level, got {type(values).__name__}")
    for key, value in vars(args).items():
        if value is None or key in {"config", "command", "verbose", "_module"}:
            continue
        if key in _NESTED:
            section, sub = _NESTED[key].split(".")
            values.setdefault(section, {})[sub] = value
        else:
            values[key] = value
    missing = [k for k in ("t2t", "source", "output_dir") if not values.get(k)]
    if missing:
        flags = {"source": "--text"}
        raise ValueError(f"missing {', '.join(flags.get(k, '--' + k) for k in missing)}")
    return values


def run(args: argparse.Namespace) -> int:
    """Build from parsed arguments; the main process prints the headline numbers."""
    from .build import build_interleaved

    stats = build_interleaved(config_from_args(args))
    if stats is not None:  # the main process reports
        print(json.dumps({k: stats[k] for k in _REPORT_KEYS if k in stats}, indent=2))
        print(f"dataset: {args.output_dir or 'output_dir'} (stats.json, README.md, span_lengths.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m dataset_builders.interleaved ...` (also under `accelerate launch -m`)."""
    import logging

    from . import __doc__ as package_doc

    parser = argparse.ArgumentParser(
        prog="python -m dataset_builders.interleaved", description=package_doc.splitlines()[0]
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


__all__ = ["add_arguments", "config_from_args", "run", "main"]

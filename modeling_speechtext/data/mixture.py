"""The pretraining data mixture (PAPER.md §5): text, interleaved, speech-only, ASR and TTS, in set proportions.

Every part is read into one tokenizer-neutral form, so parts made with different tokenizers (the interleaved
data carry the text-to-token model's ids) mix, and the LM being trained decides the ids at the end::

    {"part": "asr", "id": ..., "segments": [{"modality": "speech", "text": "", "speech_ids": [...], "loss": False},
                                             {"modality": "text", "text": " Mary went home.", "speech_ids": [],
                                              "loss": True}]}

`render_segments` turns that into `input_ids` + `completion_mask` for one LM: a text segment is tokenized, a
speech segment becomes `<|begin_of_audio|> <|audio_i|>... <|end_of_audio|>`, and the mask marks the tokens the
loss covers (everything for the unsupervised parts, the text of ASR, the speech of TTS). TRL's `SFTTrainer` with
`completion_only_loss` turns the mask into labels, so one trainer and one packed stream serve every part.

Parts are mixed with `datasets.interleave_datasets` and per-example probabilities. The preset gives shares of
*tokens* (as the paper does: ~30% text); they become example probabilities by dividing each share by the part's
mean rendered length, measured on a sample. A part is a local folder (`save_to_disk`), Parquet/JSON files, or a
Hub dataset id (streamed with `streaming: true`).

It lives in `modeling_speechtext/data/`, not `dataset_builders/`: it builds nothing to disk, it reads what the
builders made, and the pretraining recipe needs it (recipes may not import `dataset_builders`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("text", "interleaved", "speech", "asr", "tts")
# where each kind is found in a run folder when `source` is not given, and the split read
DEFAULT_SOURCES = {
    "text": "text_corpus/documents",
    "interleaved": "interleaved/data",
    "speech": "speech_tokens/dataset",
    "asr": "speech_tokens/dataset",
    "tts": "speech_tokens/dataset",
}


@dataclass
class PartConfig:
    """One part of the mixture.

    Args:
        kind: text | interleaved | speech | asr | tts.
        share: its share of the training *tokens* (normalised over the parts; 0 leaves the part out).
        source: folder, files or Hub id; default: the run folder's stage output for the kind.
        split: split to read.
        instruction: text before the input of ASR/TTS pairs (what tells the LM which task it is doing).
        max_speech_tokens: speech-only: utterances of one voice are concatenated up to this many tokens.
        max_examples: cap on the part's examples (tests, quick runs).
    """

    kind: str
    share: float
    source: str | None = None
    split: str = "train"
    instruction: str | None = None
    max_speech_tokens: int = 600
    max_examples: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"mixture part kind {self.kind!r}: expected one of {KINDS}")
        if not isinstance(self.share, (int, float)) or not math.isfinite(self.share) or self.share < 0:
            raise ValueError(f"mixture part {self.kind!r}: share must be a number >= 0, got {self.share!r}")


DEFAULT_INSTRUCTIONS = {"asr": "Transcribe the speech:", "tts": "Say it aloud:"}


@dataclass
class MixtureConfig:
    """Named parts and how they are mixed (`parts` maps a name to `PartConfig` fields)."""

    parts: dict[str, PartConfig] = field(default_factory=dict)
    stopping_strategy: str = "all_exhausted"  # every example of every part at least once
    length_sample: int = 200  # examples per part used to measure its mean length (token shares -> probabilities)
    streaming: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MixtureConfig:
        values = dict(values)
        raw = values.pop("parts", None)
        if not raw:
            raise ValueError("mixture: no parts given")
        parts = {}
        for name, part in raw.items():
            if not isinstance(part, dict):
                raise ValueError(f"mixture part {name!r}: expected a mapping of PartConfig fields, got {part!r}")
            part = {"kind": name, **part}
            unknown = set(part) - set(PartConfig.__dataclass_fields__)
            if unknown:
                raise ValueError(f"mixture part {name!r}: unknown keys {sorted(unknown)}")
            parts[name] = PartConfig(**part)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"mixture: unknown keys {sorted(unknown)}")
        cfg = cls(parts=parts, **values)
        if not any(p.share > 0 for p in parts.values()):
            raise ValueError("mixture: every share is 0; give at least one part a positive share")
        return cfg


def _load(source: str, split: str, streaming: bool, name: str):
    """A split of a local `save_to_disk` folder, a folder/glob of Parquet or JSON files, or a Hub dataset."""
    from datasets import load_dataset, load_from_disk

    path = Path(source)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        data = load_from_disk(str(path))
        if hasattr(data, "keys"):
            if split not in data:
                raise ValueError(f"mixture part {name!r}: {source} has no split {split!r} (splits: {list(data)})")
            data = data[split]
        return data.to_iterable_dataset() if streaming else data
    if path.is_dir():
        files = sorted(str(f) for f in path.glob("*.parquet")) or sorted(str(f) for f in path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"mixture part {name!r}: no .parquet or .jsonl files in {source}")
        fmt = "parquet" if files[0].endswith(".parquet") else "json"
        return load_dataset(fmt, data_files=files, split="train", streaming=streaming)
    if path.suffix in {".parquet", ".jsonl", ".json"}:
        if not path.exists():
            raise FileNotFoundError(f"mixture part {name!r}: {source} not found")
        return load_dataset(path.suffix.lstrip(".").replace("jsonl", "json"), data_files=str(path), split="train",
                            streaming=streaming)  # fmt: skip
    if source.startswith((".", "/")) or source.count("/") > 1:
        raise FileNotFoundError(f"mixture part {name!r}: {source} not found (run its stage, or set its source)")
    try:
        return load_dataset(source, split=split, streaming=streaming)  # a Hub id
    except Exception as err:  # noqa: BLE001 - datasets raises many types; the user needs the part's name
        raise FileNotFoundError(f"mixture part {name!r}: cannot load dataset {source!r}: {err}") from err


def _segment(modality: str, text: str = "", speech_ids=(), loss: bool = True) -> dict[str, Any]:
    return {"modality": modality, "text": text, "speech_ids": [int(s) for s in speech_ids], "loss": loss}


def _interleaved_segments(row: dict, vocab) -> list[dict]:
    """Segments of an interleaved row: text as written, speech ids read back from its `input_ids` slice."""
    out, pos = [], 0
    for seg in row["segments"]:
        piece = row["input_ids"][pos : pos + seg["n_tokens"]]
        pos += seg["n_tokens"]
        if seg["modality"] == "speech":
            out.append(_segment("speech", speech_ids=vocab.token_to_speech_ids(piece)))
        else:
            out.append(_segment("text", seg["text"]))
    return out


def _rows(part: PartConfig, data, name: str, vocab) -> Iterator[dict[str, Any]]:
    """The part's examples in the neutral form."""
    need = {"text": {"text"}, "interleaved": {"input_ids", "segments"}, "speech": {"speech_ids"},
            "asr": {"speech_ids", "text"}, "tts": {"speech_ids", "text"}}[part.kind]  # fmt: skip
    columns = set(data.column_names or []) if data.column_names is not None else need
    missing = need - columns
    if missing:
        raise ValueError(f"mixture part {name!r} ({part.kind}) lacks columns {sorted(missing)}: has {sorted(columns)}")
    instruction = part.instruction if part.instruction is not None else DEFAULT_INSTRUCTIONS.get(part.kind, "")
    if part.kind == "speech":  # one voice's utterances concatenated into longer stretches of speech
        buffers: dict[str, list[int]] = {}
        count = 0
        for row in data:
            voice = row.get("voice") or ""
            buf = buffers.setdefault(voice, [])
            if buf and len(buf) + len(row["speech_ids"]) > part.max_speech_tokens:
                yield {"part": name, "id": f"{name}-{count}", "segments": [_segment("speech", speech_ids=buf)]}
                count += 1
                buffers[voice] = buf = []
            buf.extend(row["speech_ids"])
        for buf in buffers.values():
            if buf:
                yield {"part": name, "id": f"{name}-{count}", "segments": [_segment("speech", speech_ids=buf)]}
                count += 1
        return
    for i, row in enumerate(data):
        rid = str(row.get("id", i))
        if part.kind == "text":
            if not (row["text"] or "").strip():
                continue
            segments = [_segment("text", row["text"])]
        elif part.kind == "interleaved":
            if vocab is None:
                raise ValueError(f"mixture part {name!r}: interleaved data need their tokenizer next to the shards")
            segments = _interleaved_segments(row, vocab)
        else:
            if not row["speech_ids"] or not (row["text"] or "").strip():
                continue
            prompt = [_segment("text", instruction, loss=False)] if instruction else []
            if part.kind == "asr":
                segments = [*prompt, _segment("speech", speech_ids=row["speech_ids"], loss=False),
                            _segment("text", " " + row["text"].strip())]  # fmt: skip
            else:
                segments = [*prompt, _segment("text", " " + row["text"].strip(), loss=False),
                            _segment("speech", speech_ids=row["speech_ids"])]  # fmt: skip
        yield {"part": name, "id": rid, "segments": segments}


def _features():
    from datasets import Features, List, Value

    segment = {"modality": Value("string"), "text": Value("string"), "speech_ids": List(Value("int32")),
               "loss": Value("bool")}  # fmt: skip
    return Features({"part": Value("string"), "id": Value("string"), "segments": List(segment)})


def load_part(name: str, part: PartConfig, run_dir: str | Path | None, streaming: bool = False):
    """One part as a `Dataset` (or `IterableDataset` when streaming) in the neutral form."""
    from datasets import Dataset, IterableDataset

    source = part.source or (str(Path(run_dir) / DEFAULT_SOURCES[part.kind]) if run_dir else None)
    if source is None:
        raise ValueError(f"mixture part {name!r}: no source and no run_dir to find one in")
    data = _load(source, part.split, streaming, name)
    vocab = None
    if part.kind == "interleaved":
        vocab = _interleaved_vocab(source)
    if part.max_examples and not streaming:
        data = data.select(range(min(part.max_examples, len(data))))
    if streaming:
        out = IterableDataset.from_generator(lambda: _rows(part, data, name, vocab), features=_features())
        return out.take(part.max_examples) if part.max_examples else out
    rows = list(_rows(part, data, name, vocab))
    if not rows:
        raise ValueError(f"mixture part {name!r}: no usable example in {source} (split {part.split!r})")
    return Dataset.from_list(rows, features=_features())


def _interleaved_vocab(source: str):
    """The speech vocabulary of the tokenizer saved with the interleaved shards (their ids are its ids)."""
    from transformers import AutoTokenizer

    from modeling_speechtext.vocab import SpeechVocab

    path = Path(source)
    for folder in (path, path.parent, path.parent / "tokenizer"):
        if (folder / "tokenizer_config.json").exists():
            return SpeechVocab.from_tokenizer(AutoTokenizer.from_pretrained(str(folder)))
    return None


def render_segments(segments: list[dict], tokenizer, vocab, eos: bool = True) -> dict[str, list[int]]:
    """Neutral segments -> `input_ids` + `completion_mask` (1 where the loss applies) for one LM's tokenizer."""
    ids: list[int] = []
    mask: list[int] = []
    for seg in segments:
        if seg["modality"] == "speech":
            piece = vocab.wrap(seg["speech_ids"])  # an id outside the codebook is a ValueError here
        else:
            piece = tokenizer(seg["text"], add_special_tokens=False)["input_ids"] if seg["text"] else []
        ids += piece
        mask += [int(bool(seg["loss"]))] * len(piece)
    if eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        mask.append(mask[-1] if mask else 1)  # the end is learnt where the completion is
    return {"input_ids": ids, "completion_mask": mask}


def example_probabilities(parts: dict[str, Any], shares: dict[str, float], tokenizer, vocab, sample: int):
    """Token shares -> per-example probabilities (share / mean rendered length), with the lengths measured."""
    lengths = {}
    for name, data in parts.items():
        rows = list(data.take(sample)) if hasattr(data, "take") else data[:sample]
        lengths[name] = sum(len(render_segments(r["segments"], tokenizer, vocab)["input_ids"]) for r in rows) / max(
            len(rows), 1
        )
    weights = {n: shares[n] / max(lengths[n], 1.0) for n in parts}
    total = sum(weights.values())
    return {n: w / total for n, w in weights.items()}, lengths


def build_mixture(cfg: MixtureConfig | dict, run_dir, tokenizer, vocab, seed: int = 0):
    """The mixed stream (neutral form) and what it is made of.

    Returns `(dataset, info)`: `info` has each part's token share, example probability, mean length and size.
    """
    from datasets import interleave_datasets

    cfg = cfg if isinstance(cfg, MixtureConfig) else MixtureConfig.from_dict(cfg)
    active = {n: p for n, p in cfg.parts.items() if p.share > 0}
    parts = {n: load_part(n, p, run_dir, cfg.streaming) for n, p in active.items()}
    total_share = sum(p.share for p in active.values())
    shares = {n: p.share / total_share for n, p in active.items()}
    probs, lengths = example_probabilities(parts, shares, tokenizer, vocab, cfg.length_sample)
    names = list(parts)
    if len(names) == 1:
        mixed = parts[names[0]]
    else:
        mixed = interleave_datasets(
            [parts[n] for n in names], probabilities=[probs[n] for n in names], seed=seed,
            stopping_strategy=cfg.stopping_strategy,
        )  # fmt: skip
    info = {
        n: {
            "kind": active[n].kind,
            "token_share": round(shares[n], 4),
            "example_probability": round(probs[n], 4),
            "mean_tokens": round(lengths[n], 1),
            "examples": None if cfg.streaming else len(parts[n]),
        }
        for n in names
    }
    return mixed, info


__all__ = [
    "DEFAULT_SOURCES",
    "KINDS",
    "MixtureConfig",
    "PartConfig",
    "build_mixture",
    "example_probabilities",
    "load_part",
    "render_segments",
]

"""Hub-ready repositories from a pipeline run: every model and dataset of the recipe, then (optionally) the upload.

`prepare_run(run, namespace, output_dir)` writes one folder per repository under `output_dir` and a `publish.json`
listing them; `push(repos)` uploads each with `upload_folder_to_hub` (one commit per repository; huggingface_hub
skips files whose content the Hub already has, so re-running after a crash uploads only what is missing).

Models (the stage folders as the recipes wrote them: safetensors, configs with `auto_map` and code files where the
model is custom, tokenizer files, generation config, the card with the run's numbers), minus resumable state, as
hard links to the run's files where the file system allows (no second copy of the weights on disk; so re-running a
stage after publishing rewrites the published weights with it: publish again before pushing). Every card is
then rewritten (replaced, never written through a link) with the repo ids and links to the other repos
(`card_links.py`: `base_model` / `datasets` metadata, a section listing every repo):

    speechtext-speech-tokenizer, -speech-decoder, -text-to-token, -base-lm, -lm (pretrain), -chat-lm (sft)
    speechtext-chat: SpeechTextForConditionalGeneration (speech tokenizer + chat LM) + SpeechTextProcessor

Datasets (Parquet + a card with `configs:` and `dataset_info`, so `load_dataset(repo_id, streaming=True)` works):

    speechtext-speech-tokens (the corpus's speech tokens), -interleaved, -dialogue

Space: `speechtext-chat` (type space): `spaces/` (app, tabs, README with the Space front matter, requirements), a copy
of the `modeling_speechtext` package (the app's engine), and `space.json` naming the model repos it loads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from modeling_speechtext.hub.card_links import link_card
from modeling_speechtext.hub.upload import DEFAULT_IGNORE

logger = logging.getLogger(__name__)

MODEL_STAGES = {
    "speech_tokenizer": "speech-tokenizer",
    "speech_decoder": "speech-decoder",
    "text_to_token": "text-to-token",
    "base_lm": "base-lm",
    "pretrain": "lm",
    "sft": "chat-lm",
}
PARQUET_DATASET_STAGES = {"interleaved": "interleaved", "dialogue": "dialogue"}


@dataclass
class PreparedRepo:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    folder: str
    source: str  # the run's stage folder it was made from


def _upstream_base(run: Path) -> str | None:
    """The Hub LM a referenced base LM stage names (`base_lm/base_lm.json`, e.g. THUDM/glm-4-9b): not published
    by us, but the pretrained LM's `base_model` all the same."""
    marker = run / "base_lm" / "base_lm.json"
    if (run / "base_lm" / "config.json").is_file() or not marker.is_file():
        return None
    return json.loads(marker.read_text()).get("model_name_or_path")


def _short_name(repo: PreparedRepo) -> str:
    """The key of `card_links.ROLES` ("lm", "dialogue", ...), or "space"."""
    return "space" if repo.repo_type == "space" else repo.repo_id.split("/", 1)[1].removeprefix("speechtext-")


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows it (a 9B model's weights are not written twice), else a copy.
    Whatever publishing rewrites afterwards (the cards) is replaced, never written through the link."""
    try:
        os.link(src, dst)
    except OSError:  # another device, or a file system without hard links
        shutil.copy2(src, dst)


def _copy_stage(src: Path, dst: Path) -> None:
    """The stage folder without resumable state or half-written files (the patterns uploads ignore)."""
    if dst.exists():
        shutil.rmtree(dst)
    patterns = [p.split("/")[0] for p in DEFAULT_IGNORE]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*patterns, "adapter"), copy_function=_link_or_copy)


def _chat_folder(run: Path, dst: Path, namespace: str) -> None:
    """The composite chat model + processor, with a card on how to load and talk to it."""
    from modeling_speechtext.generation.speech_text_chat import load_run_model

    model, processor = load_run_model(run)  # the stages' own dtype (no float32 copy of a 9B model)
    if dst.exists():
        shutil.rmtree(dst)
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    decoder = f"{namespace}/speechtext-speech-decoder"
    (dst / "README.md").write_text(f"""---
library_name: transformers
pipeline_tag: any-to-any
tags: [speechtext, speech-text-lm, spoken-dialogue, streaming-thoughts]
---
# speechtext spoken chat model

The speech tokenizer and the dialogue-SFT speech-text LM as one `PreTrainedModel`: speech (or text) in, an answer
in streaming thoughts (text and speech tokens, alternating) out. The speech tokens become audio with
[{decoder}](https://huggingface.co/{decoder}). The LM alone, a stock causal LM, is `{namespace}/speechtext-chat-lm`.

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{namespace}/speechtext-chat", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{namespace}/speechtext-chat", trust_remote_code=True)
inputs = processor.apply_chat_template([{{"role": "user", "content": [{{"type": "audio", "audio": wave_16khz}}]}}])
out = model.generate(**inputs, max_new_tokens=120, do_sample=True)   # text greedy, speech sampled
print(processor.decode_turn(out.text_ids[0]), out.speech_ids[0])
```

Streamed text and audio with the speechtext package: `SpeechTextChat.from_pretrained("{namespace}/speechtext-chat",
decoder="{decoder}").stream(audio=...)`. Numbers: the chat LM's card.
""")


def _speech_tokens_folder(run: Path, dst: Path) -> None:
    """The corpus's speech tokens (a `save_to_disk` DatasetDict in the run) as Parquet + card."""
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard, DatasetCardData

    from modeling_speechtext.hub.dataset_cards import parquet_dataset_info

    data = load_from_disk(str(run / "speech_tokens" / "dataset"))
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "data").mkdir(parents=True)
    for split, ds in data.items():
        ds.to_parquet(str(dst / "data" / f"{split}-00000-of-00001.parquet"))
    card = DatasetCardData(
        tags=["speechtext", "speech-tokens"], task_categories=["automatic-speech-recognition", "text-to-speech"],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in data]}],
        dataset_info=parquet_dataset_info(dst, list(data)),
    )  # fmt: skip
    rows = {s: len(d) for s, d in data.items()}
    DatasetCard(f"""---
{card.to_yaml()}
---
# speechtext speech tokens

The speech corpus (offline TTS voices; `test_unseen_voices` holds voices never trained on) encoded by the speech
tokenizer at 12.5 Hz: one row per utterance with its text and `speech_ids`. Rows per split: {json.dumps(rows)}.
""").save(str(dst / "README.md"))


def _space_folder(dst: Path, namespace: str, have_t2t: bool) -> None:
    """The Space: the app files, the package it runs on, and which repos to load (`space.json`)."""
    root = Path(__file__).resolve().parents[2]
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(root / "spaces", dst, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "modeling_speechtext", dst / "modeling_speechtext",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    names = {"model": "chat", "decoder": "speech-decoder"} | ({"t2t": "text-to-token"} if have_t2t else {})
    config = {key: f"{namespace}/speechtext-{name}" for key, name in names.items()}
    (dst / "space.json").write_text(json.dumps(config, indent=2) + "\n")


def prepare_run(run: str | Path, namespace: str, output_dir: str | Path) -> list[PreparedRepo]:
    """One folder per repository under `output_dir` (rewritten each time) + `publish.json`; stages the run does not
    have are skipped, and a run with none of them is an error."""
    run, out = Path(run), Path(output_dir)
    if not namespace or "/" in namespace:
        raise ValueError(f"namespace {namespace!r}: a Hub user or organisation name, without '/'")
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    out.mkdir(parents=True, exist_ok=True)
    repos: list[PreparedRepo] = []

    def add(name: str, kind: str, source: Path):
        repos.append(PreparedRepo(f"{namespace}/speechtext-{name}", kind, str(out / name), str(source)))

    for stage, name in MODEL_STAGES.items():
        if (run / stage / "config.json").is_file():
            _copy_stage(run / stage, out / name)
            add(name, "model", run / stage)
    if (run / "sft" / "config.json").is_file() and (run / "speech_tokenizer" / "config.json").is_file():
        _chat_folder(run, out / "chat", namespace)
        add("chat", "model", run / "sft")
    if (run / "speech_tokens" / "dataset" / "dataset_dict.json").is_file():
        _speech_tokens_folder(run, out / "speech-tokens")
        add("speech-tokens", "dataset", run / "speech_tokens")
    for stage, name in PARQUET_DATASET_STAGES.items():
        if (run / stage / "README.md").is_file() and any((run / stage / "data").glob("*.parquet")):
            _copy_stage(run / stage, out / name)
            add(name, "dataset", run / stage)
    if not repos:
        raise FileNotFoundError(f"{run}: no finished stage to publish (run the pipeline first)")
    names = {_short_name(r) for r in repos}
    spaces = Path(__file__).resolve().parents[2] / "spaces"
    if {"chat", "speech-decoder"} <= names and not (spaces / "app.py").is_file():
        logger.warning("publish: %s not found (an installed package, not a checkout): no Space repo", spaces)
    elif {"chat", "speech-decoder"} <= names:
        _space_folder(out / "space", namespace, "text-to-token" in names)
        repos.append(PreparedRepo(f"{namespace}/speechtext-chat", "space", str(out / "space"), "spaces/"))
    published = {_short_name(r): r.repo_type for r in repos}
    upstream = _upstream_base(run)
    for r in repos:
        link_card(r.folder, _short_name(r), namespace, published, upstream)
    (out / "publish.json").write_text(json.dumps([asdict(r) for r in repos], indent=2) + "\n")
    return repos


def push(repos: list[PreparedRepo], private: bool = False, token: str | None = None) -> dict[str, str]:
    """Upload every prepared folder; returns "type:repo id" -> commit URL (a model and a Space share a name)."""
    from tqdm.auto import tqdm

    from modeling_speechtext.hub.upload import upload_folder_to_hub

    return {
        f"{r.repo_type}:{r.repo_id}": upload_folder_to_hub(
            r.folder, r.repo_id, repo_type=r.repo_type, private=private, token=token
        )
        for r in tqdm(repos, desc="uploading")
    }


__all__ = ["MODEL_STAGES", "PreparedRepo", "prepare_run", "push"]

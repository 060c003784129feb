"""The speech decoder recipe's data: the run's speech tokens joined with their audio, target mels, random crops.

Why its own file: `recipes/train_speech_decoder.py` holds the arguments, the trainer, evaluation and the run; this is
what turns a run folder into training items (also used by the decoder diagnostics in `bench/`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from modeling_speechtext.models.speech_decoder.modeling_speech_decoder import SpeechDecoderModel


def _load_splits(data):
    """`{split: (token rows joined with their audio index, the audio split)}` from `data` (the recipe's
    `DataArguments`: run_dir, speech_tokens_dir, speech_corpus_dir)."""
    from datasets import Audio, load_from_disk

    run = Path(data.run_dir)
    tokens_dir = Path(data.speech_tokens_dir or run / "speech_tokens" / "dataset")
    corpus_dir = Path(data.speech_corpus_dir or run / "speech_corpus" / "dataset")
    for path, stage in ((tokens_dir, "speech_tokens"), (corpus_dir, "speech_corpus")):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the {stage} stage first (speechtext pipeline)")
    tokens, corpus = load_from_disk(str(tokens_dir)), load_from_disk(str(corpus_dir))
    splits = {}
    for split in tokens:
        if split not in corpus:
            raise ValueError(f"split {split!r} is in {tokens_dir} but not in {corpus_dir}")
        audio = corpus[split].cast_column("audio", Audio(decode=False))
        by_id = {row_id: i for i, row_id in enumerate(audio["id"])}
        rows = []
        for row in tokens[split]:
            if row["id"] not in by_id:
                raise ValueError(f"{tokens_dir}[{split}] id {row['id']!r} has no audio in {corpus_dir}")
            rows.append({**row, "audio_index": by_id[row["id"]]})
        splits[split] = (rows, audio)
    return splits


def _waveform(audio_split, index: int):
    from modeling_speechtext.audio import load_audio

    item = audio_split[index]["audio"]
    return load_audio(item["bytes"] if item.get("bytes") else item["path"], name=audio_split[index]["id"])


class MelDataset(torch.utils.data.Dataset):
    """(token ids, target log-mel, voice id) with random block-aligned crops of at most `max_tokens` tokens."""

    def __init__(self, items: list[dict], max_tokens: int, frames_per_token: int, block: int):
        self.items, self.max_tokens, self.fpt, self.block = items, max_tokens, frames_per_token, max(block, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        ids, mel = item["input_ids"], item["mel"]
        states = item.get("tokenizer_states")
        if len(ids) > self.max_tokens:
            start = int(torch.randint(0, (len(ids) - self.max_tokens) // self.block + 1, ())) * self.block
            ids, mel = (
                ids[start : start + self.max_tokens],
                mel[start * self.fpt : (start + self.max_tokens) * self.fpt],
            )
            states = None if states is None else states[start : start + self.max_tokens]
        return {"input_ids": ids, "mel": mel, "voice_id": item["voice_id"], "tokenizer_states": states}


def collate(batch: list[dict]) -> dict:
    n = max(len(b["input_ids"]) for b in batch)
    fpt = batch[0]["mel"].shape[0] // len(batch[0]["input_ids"])
    ids = torch.zeros(len(batch), n, dtype=torch.long)
    mask = torch.zeros(len(batch), n, dtype=torch.long)
    mel = torch.zeros(len(batch), n * fpt, batch[0]["mel"].shape[1])
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k], mask[i, :k], mel[i, : k * fpt] = b["input_ids"], 1, b["mel"].float()
    out = {"input_ids": ids, "attention_mask": mask, "mel": mel}
    if batch[0].get("tokenizer_states") is not None:
        states = torch.zeros(len(batch), n, batch[0]["tokenizer_states"].shape[-1])
        for i, b in enumerate(batch):
            states[i, : len(b["input_ids"])] = b["tokenizer_states"].float()
        out["tokenizer_states"] = states
    if batch[0]["voice_id"] is not None:
        out["voice_ids"] = torch.tensor([b["voice_id"] for b in batch])
    return out


def _mel_items(model: SpeechDecoderModel, rows: list[dict], audio_split, voice_names: list[str], desc: str):
    from tqdm.auto import tqdm

    items = []
    for row in tqdm(rows, desc=desc, mininterval=10):
        ids = list(row["speech_ids"])
        if not ids:
            continue
        mel = model.extract_mel(_waveform(audio_split, row["audio_index"]), num_tokens=len(ids))
        voice_id = voice_names.index(row["voice"]) if row["voice"] in voice_names else None
        items.append({"input_ids": torch.tensor(ids), "mel": mel.half(), "voice_id": voice_id, "row": row})
    copy = model.encoder.tokenizer_states
    if copy is not None:  # frozen: read once per whole utterance (as at inference), cropped with the ids later
        with torch.no_grad():
            for it in tqdm(items, desc=f"{desc}: tokenizer states", mininterval=10):
                it["tokenizer_states"] = copy(it["input_ids"][None].to(model.device))[0].half().cpu()
    return items


__all__ = ["MelDataset", "collate"]

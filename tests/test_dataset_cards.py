"""Dataset cards carry `dataset_info` (rows and bytes per split): two local folders of the same name load their own
rows (datasets 5.2 keyed the cache by the card alone and returned the first folder's rows for the second)."""

import pytest
from datasets import Dataset, load_dataset

from dataset_builders.dialogue.build import dialogue_card
from modeling_speechtext.hub.dataset_cards import parquet_dataset_info


def _folder(root, n):
    folder = root / "dialogue"  # same name as every run's dialogue stage
    (folder / "data").mkdir(parents=True)
    for split, rows in (("train", n), ("validation", 1)):
        Dataset.from_dict({"id": [f"{n}-{i}" for i in range(rows)]}).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet")
        )
    stats = {"dialogues": {"train": n, "validation": 1}, "voices": ["v"], "text_user_share": 0.0, "turns_mean": 1,
             "dialogues_by_source": {"babi": {"train": n, "validation": 1}}}
    dialogue_card(stats, folder).save(str(folder / "README.md"))
    return folder


def test_two_folders_of_the_same_name_load_their_own_rows(tmp_path):
    cache = str(tmp_path / "cache")
    small, large = _folder(tmp_path / "micro", 3), _folder(tmp_path / "demo", 5)
    assert load_dataset(str(small), split="train", cache_dir=cache)["id"] == ["3-0", "3-1", "3-2"]
    assert load_dataset(str(large), split="train", cache_dir=cache)["id"] == [f"5-{i}" for i in range(5)]
    info = parquet_dataset_info(large, ["train", "validation"])
    assert [s["num_examples"] for s in info["splits"]] == [5, 1] and info["download_size"] > 0
    with pytest.raises(FileNotFoundError, match="no test"):
        parquet_dataset_info(large, ["test"])

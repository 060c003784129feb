"""Renamed copies of bAbI train stories (`dataset_builders/text_corpus/augment.py`): every answer stays true
(checked by an independent simulation of who is where), pronouns keep their gender, the vocabulary stays the
task's, only train grows; and the interleaved builder's `sources` / `shuffle` selection of documents."""

import re

import pytest

from dataset_builders import text_corpus as tc
from dataset_builders.text_corpus import augment
from modeling_speechtext.paths import resolve_data_path, shared_data_dir
from modeling_speechtext.text_normalization import words

needs_data = pytest.mark.skipif(shared_data_dir() is None, reason="needs the offline data (../shared/data)")

_MOVE = re.compile(
    r"^(?:(?:Then|After that|Afterwards|Following that) )?(\w+) "
    r"(?:moved|went|journeyed|travelled)(?: back)? to the (\w+)\.?$",
    re.I,
)
_PRONOUN = re.compile(r"^(?:Then|After that|Afterwards|Following that) (he|she) ", re.I)


def _stories(task):
    babi_dir = resolve_data_path(tc.DEFAULT_BABI_DIR)
    return tc.parse_babi_file(tc.find_babi_file(babi_dir, task, "train"), task, "train")[:60]


def _simulated_answers(story):
    """(given answer, answer by tracking each person's last move) for every question of a task 1 / 6 / 11 story;
    "he"/"she" (task 11) is the last person named."""
    where: dict[str, str] = {}
    out = []
    last_named = None
    for kind, item in story.lines:
        if kind == "statement":
            m = _MOVE.match(item)
            if m:
                who = m.group(1).lower()
                if who in ("he", "she"):
                    who = last_named
                else:
                    last_named = who
                where[who] = m.group(2).lower()
            continue
        q = item.question.rstrip(" ?")
        if m := re.fullmatch(r"Where is (\w+)", q):
            out.append((item.answer.lower(), where.get(m.group(1).lower())))
        elif m := re.fullmatch(r"Is (\w+) in the (\w+)", q):
            truth = "yes" if where.get(m.group(1).lower()) == m.group(2).lower() else "no"
            out.append((item.answer.lower(), truth))
    return out


@needs_data
@pytest.mark.parametrize("task", [1, 6, 11])
def test_renamed_copies_keep_every_answer_true(task):
    stories = _stories(task)
    original = [pair for s in stories for pair in _simulated_answers(s)]
    assert original and all(given == truth for given, truth in original)  # the checker agrees with bAbI itself
    copies = augment.renamed_copies(stories, 3, seed=0)
    assert len(copies) == 3 * len(stories) and [k for k, _ in copies[: len(stories)]] == [1] * len(stories)
    renamed = [pair for _, s in copies for pair in _simulated_answers(s)]
    assert len(renamed) == len(original) * 3
    assert all(given == truth for given, truth in renamed)
    changed = sum(c.statements != s.statements for (_, c), s in zip(copies, stories * 3))
    assert changed > 0.9 * len(copies)  # a permutation can be the identity, rarely
    if task != 6:  # the answers themselves move with the places
        assert {given for given, _ in renamed} == {given for given, _ in original}
        assert sum(a != b for (a, _), (b, _) in zip(renamed, original * 3)) > len(renamed) / 2


@needs_data
def test_renamed_copies_keep_pronoun_gender_vocabulary_and_are_reproducible():
    stories = _stories(11)
    vocabulary = {w.lower() for s in stories for t in s.statements for w in words(t)}
    copies = augment.renamed_copies(stories, 2, seed=5)
    checked = 0
    for _, story in copies:
        previous = None
        for text in story.statements:
            assert {w.lower() for w in words(text)} <= vocabulary
            pronoun = _PRONOUN.match(text)
            if pronoun and previous:
                names = augment.BABI_FEMALE_NAMES if pronoun.group(1).lower() == "she" else augment.BABI_MALE_NAMES
                assert previous.lower() in names, (previous, text)
                checked += 1
            m = _MOVE.match(text)
            previous = m.group(1) if m and not pronoun else previous
    assert checked > 50
    again = augment.renamed_copies(stories, 2, seed=5)
    assert [s.lines for _, s in again] == [s.lines for _, s in copies]
    other = augment.renamed_copies(stories, 2, seed=6)
    assert [s.lines for _, s in other] != [s.lines for _, s in copies]
    # the first copy of a larger request is the copy of a smaller one
    one = augment.renamed_copies(stories, 1, seed=5)
    assert [s.lines for _, s in one] == [s.lines for _, s in copies[: len(stories)]]
    with pytest.raises(ValueError, match="task 20"):
        augment.renamed_copies(_stories(20), 1, seed=0)


@needs_data
def test_corpus_grows_only_in_train_and_keeps_qa_and_vocabulary(tmp_path):
    from datasets import load_from_disk

    base = dict(source="tiny_world", tasks=[1, 11], max_stories=12, validation_fraction=0.25, seed=7,
                num_templated_sentences=50)  # fmt: skip
    plain = tc.build_text_corpus(base, tmp_path / "plain")
    grown = tc.build_text_corpus({**base, "augment_tasks": [1], "augment_copies": 2}, tmp_path / "grown")
    a, b = (load_from_disk(str(tmp_path / n / "documents")) for n in ("plain", "grown"))
    assert b["train"].num_rows == a["train"].num_rows + 2 * 9  # 9 train stories of task 1, twice
    assert grown["renamed_documents"] == 18 and plain["renamed_documents"] == 0
    for split in ("validation", "test"):
        assert b[split]["id"] == a[split]["id"] and b[split]["text"] == a[split]["text"]
    renamed = [r for r in b["train"] if "-rename" in r["id"]]
    assert len(renamed) == 18 and {r["source"] for r in renamed} == {"babi/qa1"}
    assert [i for i in b["train"]["id"] if "-rename" not in i] == a["train"]["id"]  # the real ones, in order
    assert grown["vocabulary"] == plain["vocabulary"]
    qa_a, qa_b = (load_from_disk(str(tmp_path / n / "qa")) for n in ("plain", "grown"))
    real = qa_b["train"].filter(lambda i: "-rename" not in i, input_columns="id")
    extra = qa_b["train"].filter(lambda i: "-rename" in i, input_columns="id")
    assert real["id"] == qa_a["train"]["id"] and real["answer"] == qa_a["train"]["answer"]
    assert extra.num_rows == 2 * sum(t == 1 for t in qa_a["train"]["task"]) and set(extra["task"]) == {1}
    assert set(extra["answer"]) <= set(qa_a["train"]["answer"])
    for split in ("validation", "test"):
        assert qa_b[split]["id"] == qa_a[split]["id"]


def test_augment_config_errors():
    with pytest.raises(ValueError, match="go together"):
        tc.TextCorpusConfig.from_dict({"augment_tasks": [1]}).validate()
    with pytest.raises(ValueError, match="list of task numbers"):
        tc.TextCorpusConfig.from_dict({"augment_tasks": 1, "augment_copies": 2}).validate()
    with pytest.raises(ValueError, match="tiny_world only"):
        tc.TextCorpusConfig.from_dict({"source": "files", "augment_tasks": [1], "augment_copies": 2}).validate()
    with pytest.raises(ValueError, match="augment_copies"):
        tc.TextCorpusConfig.from_dict({"augment_tasks": [1], "augment_copies": -1}).validate()
    with pytest.raises(ValueError, match=r"augment_tasks \[7\] are not in tasks"):
        tc.TextCorpusConfig.from_dict({"tasks": [1], "augment_tasks": [7], "augment_copies": 1}).validate()
    with pytest.raises(ValueError, match="task 20"):
        tc.TextCorpusConfig.from_dict({"augment_tasks": [20], "augment_copies": 1}).validate()


# ------------------------------------------------------------------- interleaved: which documents it reads


def test_interleaved_sources_and_shuffle_select_documents(tmp_path):
    from datasets import Dataset, DatasetDict

    from dataset_builders.interleaved.config import InterleavedConfig
    from dataset_builders.interleaved.sources import open_text_source

    rows = [{"id": f"d{i:02d}", "text": f"story {i}", "source": f"babi/qa{1 + i % 4}"} for i in range(40)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "docs"))
    before = sorted(p.name for p in (tmp_path / "docs" / "train").iterdir())

    def config(**kw):
        return InterleavedConfig(source=str(tmp_path / "docs"), t2t="unused", output_dir=str(tmp_path / "out"), **kw)

    ds, n = open_text_source(config(sources=["babi/qa2", "babi/qa4"]))
    assert n == 20 and set(ds["source"]) == {"babi/qa2", "babi/qa4"} and ds["id"] == sorted(ds["id"])
    ds, n = open_text_source(config(sources=["babi/qa2", "babi/qa4"], shuffle=True, max_documents=6))
    assert n == 6 and set(ds["source"]) <= {"babi/qa2", "babi/qa4"} and ds["id"] != sorted(ds["id"])
    again, _ = open_text_source(config(sources=["babi/qa2", "babi/qa4"], shuffle=True, max_documents=6))
    assert again["id"] == ds["id"]  # seeded: the shards of a resumed build hold the same documents
    other, _ = open_text_source(config(sources=["babi/qa2", "babi/qa4"], shuffle=True, seed=1))
    assert other["id"][:6] != ds["id"][:6]
    # no cache file was written next to the source (it would change the source's content fingerprint)
    assert sorted(p.name for p in (tmp_path / "docs" / "train").iterdir()) == before
    with pytest.raises(ValueError, match=r"no document of sources \['babi/qa9'\].*holds e.g. \['babi/qa1'"):
        open_text_source(config(sources=["babi/qa9"]))
    with pytest.raises(ValueError, match="no column 'task'"):
        open_text_source(config(sources=["babi/qa1"], source_column="task"))
    with pytest.raises(ValueError, match="non-empty list"):
        config(sources="babi/qa1")
    (tmp_path / "docs.jsonl").write_text("".join(f'{{"id": "{r["id"]}", "text": "{r["text"]}"}}\n' for r in rows))
    with pytest.raises(ValueError, match="map-style"):
        open_text_source(InterleavedConfig(source=str(tmp_path / "docs.jsonl"), t2t="unused", output_dir="unused",
                                           streaming=True, shuffle=True, max_documents=4))  # fmt: skip

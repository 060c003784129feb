"""Text corpus builder: bAbI parsing (both separators), the tiny world's contract, Gutenberg cleaning, open-text
and Hub sources, split disjointness, determinism, vocabulary closure, presets."""

import json

import pytest

from dataset_builders import text_corpus as tc
from modeling_speechtext.paths import shared_data_dir
from modeling_speechtext.pipeline.presets import load_preset
from modeling_speechtext.text_normalization import normalize_text, words

needs_data = pytest.mark.skipif(shared_data_dir() is None, reason="needs the offline data (../shared/data)")

BABI_TAB = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Daniel went back to the hallway.\n"
    "5 What is Mary carrying? \tapple,milk\t1 4\n"
    "1 The office is east of the hallway.\n"
    "2 How do you go from the office to the hallway?\tw,s\t1\n"
)
BABI_PIPE = BABI_TAB.replace("\t", "|")


# ----------------------------------------------------------------------------------------------------- bAbI


@pytest.mark.parametrize("content", [BABI_TAB, BABI_PIPE], ids=["tab", "pipe"])
def test_parse_babi_both_separators(tmp_path, content):
    path = tmp_path / "qa9_x_train.txt"
    path.write_text(content)
    stories = tc.parse_babi_file(path, task=9, origin="train")
    assert len(stories) == 2
    first, second = stories
    assert first.statements == [
        "Mary moved to the bathroom.",
        "John went to the hallway.",
        "Daniel went back to the hallway.",
    ]
    q1, q2 = first.questions
    assert (q1.question, q1.answer, q1.supporting) == ("Where is Mary?", "bathroom", (1,))
    assert q1.context == ("Mary moved to the bathroom.", "John went to the hallway.")
    assert (q2.answer, q2.supporting) == ("apple,milk", (1, 4))
    assert len(q2.context) == 3  # statements only, not the earlier question
    assert second.questions[0].answer == "w,s"


def test_parse_babi_rejects_malformed_lines(tmp_path):
    bad = tmp_path / "qa1_bad_train.txt"
    bad.write_text("1 Mary moved to the bathroom.\n3 John went to the hallway.\n")
    with pytest.raises(ValueError, match="qa1_bad_train.txt:2"):
        tc.parse_babi_file(bad)
    bad.write_text("Mary moved to the bathroom.\n")
    with pytest.raises(ValueError, match="ID text"):
        tc.parse_babi_file(bad)
    bad.write_text("1 Mary moved.\n2 Where is Mary?\tbathroom\n")
    with pytest.raises(ValueError, match="question line"):
        tc.parse_babi_file(bad)


def test_render_document_format(tmp_path):
    path = tmp_path / "qa9_x_train.txt"
    path.write_text(BABI_TAB)
    first, second = tc.parse_babi_file(path, 9)
    assert tc.render_babi_story(first) == (
        "Mary moved to the bathroom.\nJohn went to the hallway.\nWhere is Mary? bathroom.\n"
        "Daniel went back to the hallway.\nWhat is Mary carrying? apple, milk."
    )
    assert tc.render_babi_story(second).endswith("How do you go from the office to the hallway? west, south.")
    assert tc.render_babi_sentence("where will sumit go?", "?") == "Where will Sumit go?"
    assert tc.render_babi_answer("bill") == "Bill"
    assert tc.render_babi_answer("nothing") == "nothing"


@needs_data
def test_real_babi_files_parse_in_both_formats():
    babi = shared_data_dir() / tc.DEFAULT_BABI_DIR
    for task in (1, 2):  # qa1 uses '|' in this copy, qa2 tabs
        stories = tc.parse_babi_file(tc.find_babi_file(babi, task, "train"), task)
        assert sum(len(s.questions) for s in stories) == 1000
        assert all(s.lines[0][0] == "statement" for s in stories)


# -------------------------------------------------------------------------------------------- tiny world


def _tiny_cfg(**kw):
    cfg = dict(
        source="tiny_world",
        tasks=[1, 6, 19],
        max_stories=12,
        validation_fraction=0.25,
        num_templated_sentences=120,
        sentence_validation_fraction=0.15,
        sentence_test_fraction=0.15,
        seed=7,
    )
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    if shared_data_dir() is None:
        pytest.skip("needs the offline data (../shared/data)")
    from datasets import load_from_disk

    out = tmp_path_factory.mktemp("tiny_world")
    stats = tc.build_text_corpus(_tiny_cfg(), out)
    return out, stats, {p: load_from_disk(str(out / p)) for p in ("documents", "sentences", "qa")}


def test_tiny_world_contract(tiny_world):
    out, stats, ds = tiny_world
    for part in ("documents", "sentences", "qa"):
        assert list(ds[part]) == ["train", "validation", "test"]
    for part in ("documents", "sentences"):
        for split in ds[part].values():
            assert {k: v.dtype for k, v in split.features.items()} == {
                "id": "string",
                "text": "string",
                "source": "string",
            }
    qa_features = ds["qa"]["train"].features
    assert {k: v.dtype for k, v in qa_features.items()} == {
        "id": "string",
        "task": "int32",
        "story": "string",
        "question": "string",
        "answer": "string",
    }
    # splits follow bAbI: 12 train stories per task -> 9 train + 3 validation; 12 test stories per task
    assert [ds["documents"][s].num_rows for s in ("train", "validation", "test")] == [27, 9, 36]
    assert all(i.split("-")[1] == "test" for i in ds["documents"]["test"]["id"])
    assert all(i.split("-")[1] == "train" for i in ds["documents"]["validation"]["id"])
    disk = json.loads((out / "stats.json").read_text())
    assert disk["splits"]["train"]["documents"] == 27
    assert disk["splits"]["test"]["qa"] == ds["qa"]["test"].num_rows
    # the vocabulary is that of the rows written, not of some intermediate
    written = {w for part in ("documents", "sentences") for split in ds[part].values() for t in split["text"]
               for w in words(t)}  # fmt: skip
    assert disk["vocabulary"] == sorted(written) and disk["vocabulary_size"] == len(written) > 20
    for split in ("train", "validation", "test"):
        assert disk["splits"][split]["sentences"] == ds["sentences"][split].num_rows
        assert disk["splits"][split]["document_words"] == sum(len(words(t)) for t in ds["documents"][split]["text"])


def test_tiny_world_questions_answered_inline(tiny_world):
    _, _, ds = tiny_world
    docs = {d["id"]: d["text"] for split in ds["documents"].values() for d in split}
    qa_doc = {}
    for split in ("train", "validation", "test"):
        doc_ids = set(ds["documents"][split]["id"])
        for row in ds["qa"][split]:
            doc_id = row["id"].rsplit("-", 1)[0]
            assert doc_id in doc_ids  # a question lives in the split of its story
            lines = docs[doc_id].split("\n")
            assert f"{row['question']} {row['answer']}." in lines
            assert all(s in lines for s in row["story"].split("\n"))  # context = earlier statements
            qa_doc[row["task"]] = row
    assert qa_doc[19]["answer"].split(", ")[0] in {"north", "south", "east", "west"}  # compass letters spelled out
    assert all(a in {"yes", "no", "maybe"} for a in ds["qa"]["train"].filter(lambda r: r["task"] == 6)["answer"])


def test_tiny_world_sentence_splits_disjoint_and_closed(tiny_world):
    _, stats, ds = tiny_world
    keys = {s: {normalize_text(t) for t in ds["sentences"][s]["text"]} for s in ("train", "validation", "test")}
    sizes = {s: ds["sentences"][s].num_rows for s in keys}
    assert all(len(keys[s]) == sizes[s] for s in keys)  # no duplicates within a split
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert sizes["validation"] > 0 and sizes["test"] > 0
    # closure: every word anywhere appears in the train documents (templates only use train words)
    train_doc_vocab = {w for t in ds["documents"]["train"]["text"] for w in words(t)}
    for split in ("train", "validation", "test"):
        assert {w for t in ds["sentences"][split]["text"] for w in words(t)} <= train_doc_vocab
    sources = {s for split in ds["sentences"].values() for s in split["source"]}
    assert sources == {"babi_statement", "babi_question", "babi_qa", "templated"}
    assert stats["templated_sentences"] == 120
    # nothing from validation/test stories reaches the sentences: their QA lines are not sentences
    held_out_qa = {normalize_text(f"{r['question']} {r['answer']}") for r in ds["qa"]["test"]}
    train_qa = {normalize_text(f"{r['question']} {r['answer']}") for r in ds["qa"]["train"]}
    all_sentences = set().union(*keys.values())
    assert not (held_out_qa - train_qa) & all_sentences
    assert max(len(words(t)) for split in ds["sentences"].values() for t in split["text"]) <= 30


@needs_data
def test_tiny_world_is_deterministic(tmp_path, tiny_world):
    from datasets import load_from_disk

    _, _, ds = tiny_world
    tc.build_text_corpus(_tiny_cfg(), tmp_path / "again")
    again = load_from_disk(str(tmp_path / "again" / "sentences"))
    for split in ("train", "validation", "test"):
        assert again[split]["text"] == ds["sentences"][split]["text"]
    tc.build_text_corpus(_tiny_cfg(seed=8), tmp_path / "other")
    other = load_from_disk(str(tmp_path / "other" / "sentences"))
    assert set(other["validation"]["text"]) != set(ds["sentences"]["validation"]["text"])


def test_templated_sentences_keep_coreference_and_vocabulary():
    patterns = ["Mary moved to the bathroom.", "The office is east of the hallway.", "Where is Mary?"]
    vocab = {w for p in patterns for w in words(p)} | {"john", "kitchen", "garden", "went", "west"}
    out = tc.templated_sentences(patterns, vocab, 30, seed=1, exclude={normalize_text(p) for p in patterns})
    assert 0 < len(out) <= 30 and len(set(out)) == len(out)
    for s in out:
        assert set(words(s)) <= vocab
        if " is " in s and " of the " in s:  # two places stay two different places
            a, b = s.split(" is ")[0].split()[-1], s.rstrip(".").split()[-1]
            assert a != b
    assert tc.templated_sentences(patterns, vocab, 30, seed=1) == tc.templated_sentences(patterns, vocab, 30, seed=1)


# --------------------------------------------------------------------------------------- Gutenberg & files

MODERN = """The Project Gutenberg EBook of A Tale, by Someone

This eBook is for the use of anyone anywhere at no cost.

*** START OF THIS PROJECT GUTENBERG EBOOK A TALE ***

Produced by A Volunteer and the Online Distributed
Proofreading Team

A TALE

CHAPTER I

Contents

 I. THE BEGINNING
 II. THE MIDDLE
 III. THE END

It was a dark and stormy night.  The rain fell in
torrents, except at occasional intervals.

[Illustration: a house]

"Who is there?" asked Mr. Holmes. _Nobody_ answered.

*** END OF THIS PROJECT GUTENBERG EBOOK A TALE ***

***** This file should be named 1234.txt *****
Updated editions will replace the previous one.
"""

GITENBERG = """Produced by David Widger

THE STORY

Once upon a time there lived a king who had three daughters, and the youngest was the fairest of all.

She walked in the garden every day.


End of Project Gutenberg's The Story, by Nobody
"""

OLD = """The Project Gutenberg Etext of Old Book
Please take a look at the important information in this header.

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this "Small Print!" statement here? You know: lawyers.
*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.07.00*END*

The old man sat by the fire and told his tale to the children.
"""


def test_strip_gutenberg_variants():
    body = tc.strip_gutenberg(MODERN)
    assert body.lstrip().startswith("A TALE") and body.rstrip().endswith("answered.")
    assert "Gutenberg" not in body and "Produced by" not in body and "should be named" not in body
    assert tc.strip_gutenberg(GITENBERG).strip().startswith("THE STORY")
    assert "End of Project" not in tc.strip_gutenberg(GITENBERG)
    old = tc.strip_gutenberg(OLD)
    assert old.strip() == "The old man sat by the fire and told his tale to the children."
    plain = "Just text.\n\nMore text."
    assert tc.strip_gutenberg(plain) == plain


def test_gutenberg_paragraphs_drop_headings_and_contents():
    paras = tc.gutenberg_paragraphs(MODERN)
    assert paras == [
        "It was a dark and stormy night. The rain fell in torrents, except at occasional intervals.",
        '"Who is there?" asked Mr. Holmes. Nobody answered.',
    ]


@needs_data
def test_real_gutenberg_books_are_clean():
    books = sorted((shared_data_dir() / "text" / "gutenberg").glob("*.txt"))
    for book in books:
        items, fmt = tc.read_text_items(book)
        assert fmt == "paragraphs" and len(items) > 200, book.name
        assert not any("project gutenberg" in p.lower() for p in items[-5:] + items[:5]), book.name
    alice, _ = tc.read_text_items(next(b for b in books if b.name.startswith("Alice")))
    assert alice[0].startswith("Alice was beginning to get very tired")


def test_split_and_clean_sentences():
    text = 'Mr. Holmes met H. G. Wells. "Is it you?" he asked! It was 7 p.m. Then they left.'
    assert tc.split_sentences(text) == [
        "Mr. Holmes met H. G. Wells.",
        '"Is it you?" he asked!',
        "It was 7 p.m.",
        "Then they left.",
    ]
    ok = tc.clean_sentence("The rain fell in torrents.", 3, 30)
    assert ok == "The rain fell in torrents."
    for junk in [
        "CHAPTER ONE THE BEGINNING.",
        "and then he went home.",
        "Too short.",
        "See http://x.org for more.",
        "12 34 56 78 -- 90 ## 11.",
        "Project Gutenberg is a registered trademark.",
    ]:
        assert tc.clean_sentence(junk, 3, 30) is None, junk
    assert tc.clean_sentence('He said "stop and went.', 3, 30) == "He said stop and went."


def test_line_and_fortune_formats(tmp_path):
    verses = tmp_path / "kjv.txt"
    verses.write_text(
        "Ge1:1 In the beginning God created the heaven and the earth.\n1Sm2:3 Talk no more so exceeding proudly.\n"
    )
    items, fmt = tc.read_text_items(verses)
    assert fmt == "lines" and items[0].startswith("In the beginning") and items[1].startswith("Talk no more")
    fortunes = tmp_path / "fortunes.txt"
    fortunes.write_text("A fool and his money are soon parted.\t\t-- Anon\n%\nLook before you leap.\n")
    items, fmt = tc.read_text_items(fortunes)
    assert fmt == "fortunes" and items == ["A fool and his money are soon parted.", "Look before you leap."]
    classic = tmp_path / "classic"
    classic.write_text("Line one of a fortune\nthat goes on.\n%\nAnother one.\n%\nThird.\n%\n")
    items, _ = tc.read_text_items(classic, "fortunes")
    assert items == ["Line one of a fortune that goes on.", "Another one.", "Third."]


def _write_books(root, n_books=4, paragraphs=30):
    root.mkdir(parents=True, exist_ok=True)
    for b in range(n_books):
        body = "\n\n".join(
            f"Paragraph {p} of book {b} begins here. The traveller number {p} walked along the road to town {b}. "
            f"She saw {p} birds and {b} trees on the way."
            for p in range(paragraphs)
        )
        (root / f"book{b}.txt").write_text(MODERN.replace("It was a dark and stormy night.", body))


def test_files_source(tmp_path):
    from datasets import load_from_disk

    _write_books(tmp_path / "books")
    cfg = dict(
        source="files",
        paths=[str(tmp_path / "books")],
        max_document_words=120,
        min_document_words=10,
        validation_fraction=0.2,
        test_fraction=0.2,
        seed=3,
    )
    stats = tc.build_text_corpus(cfg, tmp_path / "out")
    docs = load_from_disk(str(tmp_path / "out" / "documents"))
    sents = load_from_disk(str(tmp_path / "out" / "sentences"))
    assert all(docs[s].num_rows > 0 for s in ("train", "validation", "test")), stats["splits"]
    assert all(len(t.split()) <= 120 for split in docs.values() for t in split["text"])
    assert not any("Gutenberg" in t or "START OF" in t for split in docs.values() for t in split["text"])
    keys = {s: {normalize_text(t) for t in sents[s]["text"]} for s in sents}
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert set(docs["train"]["source"]) <= {f"books/book{b}" for b in range(4)}
    assert stats["file_formats"]["books/book0"] == "paragraphs"
    with pytest.raises(FileNotFoundError, match="missing: not a file or folder"):
        tc.build_text_corpus(dict(source="files", paths=[str(tmp_path / "missing")]), tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        tc.build_text_corpus(dict(source="files", paths=[str(tmp_path / "empty")]), tmp_path / "x")


# ------------------------------------------------------------------------------------------------------ Hub


def _records(n):
    return [
        {
            "text": f"Document {i} is about science.\nPlants need light to grow, and number {i} is no exception. "
            f"Water matters too for plant {i}.",
            "url": f"u{i}",
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("streaming", [True, False])
def test_hub_source_through_the_seam(tmp_path, streaming):
    from datasets import Dataset, IterableDataset, load_from_disk

    records = _records(50)
    seen = {}

    def loader(cfg):
        seen["args"] = (cfg.hub_dataset, cfg.hub_config, cfg.hub_split, cfg.streaming)
        if streaming:
            return IterableDataset.from_generator(lambda: iter(records))
        return Dataset.from_list(records)

    cfg = dict(
        source="hub",
        hub_dataset="HuggingFaceFW/fineweb-edu",
        hub_config="sample-10BT",
        streaming=streaming,
        max_documents=30,
        min_document_words=5,
        validation_fraction=0.2,
        test_fraction=0.2,
        seed=0,
    )
    stats = tc.build_text_corpus(cfg, tmp_path / "out", hub_loader=loader)
    assert seen["args"] == ("HuggingFaceFW/fineweb-edu", "sample-10BT", "train", streaming)
    assert stats["hub_records"] == 30
    docs = load_from_disk(str(tmp_path / "out" / "documents"))
    assert sum(d.num_rows for d in docs.values()) == 30
    assert all(d["source"] == "HuggingFaceFW/fineweb-edu" for d in docs["train"])
    sents = load_from_disk(str(tmp_path / "out" / "sentences"))
    assert "Plants need light to grow, and number 0 is no exception." in set().union(
        *(s["text"] for s in sents.values())
    )

    with pytest.raises(ValueError, match="no column 'content'"):
        tc.build_text_corpus({**cfg, "text_column": "content"}, tmp_path / "bad", hub_loader=loader)


# --------------------------------------------------------------------------------------- config & presets


def test_config_validation():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sauce'\]; known keys are \[.*'source'"):
        tc.TextCorpusConfig.from_dict({"sauce": "tiny_world"})
    with pytest.raises(ValueError, match="source must be"):
        tc.TextCorpusConfig.from_dict({"source": "web"})
    with pytest.raises(ValueError, match="hub_dataset"):
        tc.TextCorpusConfig.from_dict({"source": "hub"})
    with pytest.raises(ValueError, match="tasks"):
        tc.TextCorpusConfig.from_dict({"tasks": [0, 21]})
    with pytest.raises(ValueError, match="validation_fraction"):
        tc.TextCorpusConfig.from_dict({"validation_fraction": 1.5})


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset):
    cfg = tc.TextCorpusConfig.from_dict(load_preset(preset)["text_corpus"])
    if preset == "paper":
        assert (cfg.source, cfg.hub_dataset, cfg.hub_config, cfg.streaming) == (
            "hub",
            "HuggingFaceFW/fineweb-edu",
            "sample-10BT",
            True,
        )
    else:
        assert cfg.source == "tiny_world"
        assert len(cfg.tasks) == (2 if preset == "micro" else 20)


@needs_data
def test_run_stage_micro(tmp_path):
    cfg = load_preset("micro")["text_corpus"]
    from datasets import load_from_disk

    metrics = tc.run_stage(cfg, tmp_path / "text_corpus", tmp_path)
    assert json.loads(json.dumps(metrics)) == metrics  # JSON-serialisable for stage.json
    stats = json.loads((tmp_path / "text_corpus" / "stats.json").read_text())
    assert metrics["vocabulary_size"] == stats["vocabulary_size"] > 20 and metrics["source"] == "tiny_world"
    for part in ("documents", "sentences", "qa"):  # the headline counts are those of the rows on disk
        dd = load_from_disk(str(tmp_path / "text_corpus" / part))
        assert {f"{s}_{part}": dd[s].num_rows for s in dd} == {k: v for k, v in metrics.items() if k.endswith(part)}
    assert metrics["train_documents"] > 0 and metrics["test_qa"] > 0
    assert metrics["validation_sentences"] >= 8 and metrics["test_sentences"] >= 8  # the micro speech corpus takes 8

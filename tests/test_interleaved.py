"""The pure half of the interleaved builder: units, span sampling, speakability, plans, assembly (no model)."""

import numpy as np
import pytest

from dataset_builders.interleaved import (
    SPEECH,
    TEXT,
    Segment,
    SpanLengthDistribution,
    assemble_example,
    merge_text_segments,
    plan_document,
    sample_spans,
    speakable_text,
    split_units,
)
from modeling_speechtext.vocab import SpeechVocab


def test_split_units_words_and_sentences():
    text = "Mary went home.  John slept!\nWhere is he? (Here.) Done"
    words = split_units(text, "word")
    assert [text[a:b] for a, b in words][:3] == ["Mary", "went", "home."]
    assert len(words) == len(text.split())
    sents = [text[a:b] for a, b in split_units(text, "sentence")]
    assert sents == ["Mary went home.", "John slept!", "Where is he?", "(Here.)", "Done"]
    assert split_units("line one\nline two", "sentence") == [(0, 8), (9, 17)]
    assert split_units("   ", "word") == []
    with pytest.raises(ValueError, match="granularity"):
        split_units("x", "paragraph")


def _check_spans(spans, n):
    for a, b in spans:
        assert 0 <= a < b <= n
    for (_, b1), (a2, _) in zip(spans, spans[1:]):
        assert a2 > b1  # ordered, non-overlapping, at least one text unit between spans


@pytest.mark.parametrize("n", [1, 3, 10, 57])
def test_sample_spans_hits_eta_on_average(n):
    lengths = SpanLengthDistribution("poisson", mean=4, min=1, max=12)
    covered = []
    for seed in range(3000):
        spans = sample_spans(n, 0.3, np.random.default_rng(seed), lengths)
        _check_spans(spans, n)
        covered.append(sum(b - a for a, b in spans) / n)
    assert np.mean(covered) == pytest.approx(0.3, abs=0.02)


def test_sample_spans_edges_and_determinism():
    lengths = SpanLengthDistribution("fixed", mean=3, min=1, max=10)
    rng = np.random.default_rng
    assert sample_spans(0, 0.3, rng(0), lengths) == []
    assert sample_spans(20, 0.0, rng(0), lengths) == []
    assert sample_spans(20, 1.0, rng(0), lengths) == [(0, 20)]  # all speech: one span
    spans = sample_spans(30, 0.5, rng(1), lengths)
    assert spans == sample_spans(30, 0.5, rng(1), lengths)
    assert sum(b - a for a, b in spans) == 15 and all(b - a <= 15 for a, b in spans)
    assert sample_spans(30, 0.5, rng(2), lengths) != spans
    with pytest.raises(ValueError, match="eta"):
        sample_spans(10, 1.5, rng(0), lengths)


def test_span_length_distributions():
    rng = np.random.default_rng(0)
    assert {SpanLengthDistribution("fixed", mean=5).sample(rng) for _ in range(20)} == {5}
    uni = [SpanLengthDistribution("uniform", min=2, max=4).sample(rng) for _ in range(300)]
    assert set(uni) == {2, 3, 4}
    geo = [SpanLengthDistribution("geometric", mean=6, max=1000).sample(rng) for _ in range(4000)]
    assert np.mean(geo) == pytest.approx(6, rel=0.1)
    poi = [SpanLengthDistribution("poisson", mean=8, min=1, max=10).sample(rng) for _ in range(1000)]
    assert min(poi) >= 1 and max(poi) <= 10
    for bad in ({"distribution": "zipf"}, {"min": 0}, {"min": 5, "max": 2}, {"mean": 0}):
        with pytest.raises(ValueError, match="span_length"):
            SpanLengthDistribution(**bad)


def test_speakable_text():
    assert speakable_text("  Café  naïve ") == "Cafe naive"
    assert speakable_text("\u201cHi\u201d \u2014 there") == '"Hi" - there'
    assert speakable_text("Tokyo 東京") is None  # a script the model never heard: not speakable
    assert speakable_text("!!! -- 42") is None
    assert speakable_text("Zoë's 3 cats") == "Zoe's 3 cats"


def test_plan_document_segments_concatenate_back():
    text = "Mary went to the kitchen. John moved to the garden. Sandra journeyed to the bathroom. " * 5
    plan = plan_document(text, np.random.default_rng(0), eta=0.4, lengths=SpanLengthDistribution(mean=3))
    assert plan.skip_reason is None and not plan.truncated
    assert "".join(s.text for s in plan.segments) == text.strip()
    kinds = [s.modality for s in plan.segments]
    assert SPEECH in kinds and TEXT in kinds
    assert all(a != b or a == SPEECH for a, b in zip(kinds, kinds[1:]))  # no two text segments in a row
    assert all(s.speech_text == speakable_text(s.text) for s in plan.segments if s.modality == SPEECH)
    assert all(not s.text.startswith(" ") for s in plan.segments[:1])


def test_plan_document_bad_inputs_are_counted():
    rng = np.random.default_rng
    assert plan_document("", rng(0)).skip_reason == "empty"
    assert plan_document(None, rng(0)).skip_reason == "empty"
    assert plan_document(" \n\t ", rng(0)).skip_reason == "empty"
    assert plan_document("東京 大阪 123 !!!", rng(0)).skip_reason == "no_speakable_text"
    huge = plan_document("word " * 10_000, rng(0), max_document_chars=1000)
    assert huge.truncated and len("".join(s.text for s in huge.segments)) <= 1000
    # eta=1 over a document whose only span mixes in another script: the span stays text, counted
    sentence = plan_document("Mary went to 東京 and back.", rng(0), eta=1.0, granularity="sentence")
    assert sentence.skip_reason is None and [s.modality for s in sentence.segments] == [TEXT]  # kept as text
    mixed = plan_document("Hello 東京 friend", rng(0), eta=1.0)
    assert [s.modality for s in mixed.segments] == [TEXT] and mixed.counts["spans_unspeakable"] == 1
    long = plan_document("a " * 200, rng(0), eta=1.0, max_span_chars=50)
    assert long.counts["spans_too_long"] == 1 and long.segments[0].modality == TEXT
    ascii_folded = plan_document("Café au lait", rng(0), eta=1.0)
    assert ascii_folded.segments == [Segment(SPEECH, "Café au lait", "Cafe au lait")]


def test_merge_and_assemble():
    segs = [
        Segment(TEXT, "A"),
        Segment(TEXT, " B"),
        Segment(SPEECH, " C D", "C D"),
        Segment(TEXT, ""),
        Segment(TEXT, " E"),
    ]
    merged = merge_text_segments(segs)
    assert merged == [Segment(TEXT, "A B"), Segment(SPEECH, " C D", "C D"), Segment(TEXT, " E")]
    vocab = SpeechVocab(codebook_size=10, audio_offset=100, begin_of_audio_id=110, end_of_audio_id=111)
    ids, records = assemble_example(merged, [[1, 2], [3, 9, 0], [4]], vocab, eos_token_id=0)
    assert ids == [1, 2, 110, 103, 109, 100, 111, 4, 0]
    assert records == [
        {"modality": "text", "text": "A B", "n_tokens": 2},
        {"modality": "speech", "text": "C D", "n_tokens": 5},
        {"modality": "text", "text": " E", "n_tokens": 1},
    ]
    assert sum(r["n_tokens"] for r in records) + 1 == len(ids)
    with pytest.raises(ValueError, match="outside the codebook"):
        assemble_example(merged, [[1], [10], [4]], vocab)
    with pytest.raises(ValueError, match="segments but"):
        assemble_example(merged, [[1]], vocab)


@pytest.mark.parametrize("preset", ["micro", "demo", "tiny", "paper"])
def test_presets_parse(preset):
    from dataset_builders.interleaved import InterleavedConfig
    from modeling_speechtext.pipeline.presets import load_preset

    cfg = load_preset(preset)["interleaved"]
    parsed = InterleavedConfig.from_dict({"source": "x", "t2t": "y", "output_dir": "z", **cfg})
    assert 0.2 <= parsed.eta <= 0.4 and parsed.lengths.max >= parsed.lengths.min
    with pytest.raises(ValueError, match="unknown interleaved config keys"):
        InterleavedConfig.from_dict({"source": "x", "t2t": "y", "output_dir": "z", "etta": 0.3})


def test_cli_interleave_arguments(tmp_path, capsys):
    import subprocess
    import sys

    from modeling_speechtext.cli.interleave import config_from_args
    from modeling_speechtext.cli.main import build_parser, main

    (tmp_path / "cfg.yaml").write_text("eta: 0.25\nspan_length: {mean: 3}\ndocuments_per_shard: 7\n")
    args = build_parser().parse_args(
        ["interleave", "--config", str(tmp_path / "cfg.yaml"), "--t2t", "m", "--text", "d", "--output_dir", "o",
         "--eta", "0.4", "--span_max", "9", "--temperature", "0.8"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg["eta"] == 0.4 and cfg["documents_per_shard"] == 7  # flags beat the YAML, the YAML fills the rest
    assert cfg["span_length"] == {"mean": 3, "max": 9} and cfg["synthesis"] == {"temperature": 0.8}
    assert main(["interleave", "--t2t", "m"]) == 2
    assert "missing --text, --output_dir" in capsys.readouterr().err
    # the command module imports neither torch nor datasets at start-up (they load inside `run`)
    code = "import sys, modeling_speechtext.cli.interleave; print('torch' in sys.modules or 'datasets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_speech_pieces_split_spans_into_sentences():
    from dataset_builders.interleaved import speech_pieces

    assert speech_pieces("Mary went to the hallway. John is in the garden.") == [
        "Mary went to the hallway.",
        "John is in the garden.",
    ]
    # short sentences join a neighbour: "Where is John?" + the one-word answer
    assert speech_pieces("Mary went to the hallway. Where is John? garden.") == [
        "Mary went to the hallway.",
        "Where is John? garden.",
    ]
    assert speech_pieces("Mary went to the hallway. garden.") == ["Mary went to the hallway. garden."]
    assert speech_pieces("went to the") == ["went to the"]
    assert speech_pieces("A. B. C. D. E.", min_words=2) == ["A. B.", "C. D. E."]

"""The scoring normaliser (ASR target / WER) and the readable cleaner."""

import random
import string
import unicodedata

import pytest

from modeling_speechtext.text_normalization import clean_text, normalize_text, normalize_whitespace, words


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Where is Mary? bathroom.", "where is mary bathroom"),
        (
            "How do you go from the kitchen to the garden? south, east.",
            "how do you go from the kitchen to the garden south east",
        ),
        ("Don't  stop--it's 7:30, OK?", "dont stop its 7 30 ok"),
        ("well-known\ts,e\n x", "well known s e x"),
        ("Caf\u00e9 \u2014 na\u00efve \u201cquoted\u201d \u2018it\u2019s\u2019", "caf\u00e9 na\u00efve quoted its"),
        ("Room 101 costs $5 (100%)", "room 101 costs 5 100"),
        ("  ", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_ascii_fast_path_matches_the_general_rule():
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice(string.printable) for _ in range(40))
        general = "".join(
            " " if unicodedata.category(c)[0] in "PSZC" else c for c in text.lower().replace("'", "").replace("`", "")
        )
        assert normalize_text(text) == normalize_whitespace(general), text


def test_clean_text_keeps_case_and_punctuation():
    assert (
        clean_text("  \u201cHello,\u201d  she said\u2014twice -- \u2019now\u2019.\n")
        == "\"Hello,\" she said - twice - 'now'."
    )
    assert words("Mary moved to the bathroom.") == ["mary", "moved", "to", "the", "bathroom"]

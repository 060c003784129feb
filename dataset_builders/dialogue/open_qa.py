"""Open-vocabulary spoken exchanges for the dialogue data: one spoken question, one short full-sentence answer.

Sources (under the offline data root, `qa/`): `uscis_civics` (the 100 US civics questions; each lists alternative
acceptable answers, the first is said) and `webquestions` (WebQuestions; `trainmodel.json` -> train, `val.json` ->
validation; `devtest`/`test` are left alone: they are the source of the Spoken WebQuestions evaluation). The bAbI
dialogues are a closed world; these are what the open-vocabulary presets add, so that the chat learns to answer a
question it has never seen in the form of a sentence ("The capital of France is Paris.").

The answer sentence is made by rules over the question's first words, because the answer alone is not a sentence
and the data has no sentence answers. A question form the rules do not know gets "The answer is X." — always a
full sentence that contains the answer, never a guess at grammar.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

OPEN_QA_SOURCES = ("uscis_civics", "webquestions")
# WebQuestions answers are entity names; some are URLs or whole lists scraped from a knowledge base
_MAX_ANSWER_WORDS = 8
_MAX_ANSWERS_SAID = 3
_MAX_QUESTION_WORDS = 30
_COPULA = re.compile(r"^(what|which|who|where|when)\s+(is|are|was|were)\s+(.+)$", re.IGNORECASE)
_NAME = re.compile(r"^name\s+(one|two|three)\s+(.+)$", re.IGNORECASE)
_COUNT = {"two": 2, "three": 3}
_WHO_VERB = re.compile(r"^who\s+(?!is\b|are\b|was\b|were\b|do\b|does\b|did\b)(\w+)\s+(.+)$", re.IGNORECASE)


def _civics_split(qid: str, seed: int, validation_fraction: float) -> str:
    h = int(hashlib.sha1(f"{seed}:civics:{qid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < validation_fraction else "train"


def _question(text: str) -> str:
    text = " ".join(text.strip().split())
    text = text[:1].upper() + text[1:]
    return text if text[-1:] in "?." else text + "?"  # civics asks some as commands ("Name one state ...")


def _usable_answer(a: str) -> bool:
    return (bool(a.strip()) and "http" not in a and "://" not in a and len(a.split()) <= _MAX_ANSWER_WORDS
            and not a.lower().startswith("varies by"))  # civics: "varies by state" is no answer to say  # fmt: skip


_ASKS_FOR = re.compile(r"\b(?:name|what are)\s+(two|three)\b", re.IGNORECASE)
# a subject ending so cannot take "is X" after it ("Who is chris cooley married to?", "What was van gogh famous for?")
_DANGLING = {"to", "for", "from", "in", "of", "with", "on", "at", "about", "by", "do", "does", "did"}


def _asked_count(question: str) -> int:
    """Civics asks for "two rights", "Name three.": that many of its alternatives are said ("Name one of the two
    longest rivers" asks for one)."""
    m = _ASKS_FOR.search(question)
    return _COUNT[m.group(1).lower()] if m else 1


def _civics_answers(question: str, answers: list[str]) -> list[str]:
    """The alternatives to say, bracketed glosses dropped ("(James) Madison" -> "Madison"); an alternative that
    is itself a list ("Democratic and Republican") is said alone, not joined with its restatements."""
    clean = [re.sub(r"\s+([.,;:!?])", r"\1", " ".join(re.sub(r"\([^)]*\)", " ", a).split())) for a in answers]
    clean = [a for a in clean if a]
    if not clean:
        return []
    if " and " in clean[0]:
        return clean[:1]
    chosen = [a for a in clean if " and " not in a][: _asked_count(question)]
    return chosen


def load_open_qa(root: str | Path, source: str, seed: int = 0, validation_fraction: float = 0.1) -> dict[str, list]:
    """`{"train": [...], "validation": [...]}` of `{"id", "source", "question", "answers", "answer_text"}` rows;
    rows with no usable answer (URLs, long lists) or an over-long question are left out. `answer_text` is what the
    assistant says: civics answers are alternatives (the first is said), WebQuestions answers all belong to the
    question (up to three are said, joined with "and")."""
    root = Path(root)
    if source not in OPEN_QA_SOURCES:
        raise ValueError(f"dialogue: unknown open QA source {source!r}; known: {', '.join(OPEN_QA_SOURCES)}")
    folder = root / source
    if not folder.is_dir():
        raise FileNotFoundError(f"dialogue: open QA source {source!r} not found at {folder}")
    out: dict[str, list] = {"train": [], "validation": []}
    if source == "uscis_civics":
        rows = json.loads((folder / "naturalization_questions.json").read_text())
        items = [(_civics_split(str(r["id"]), seed, validation_fraction), f"civics-{r['id']}", r["question"],
                  _civics_answers(r["question"], r["answers"])) for r in rows]  # fmt: skip
    else:
        items = [(split, r["qId"], r["qText"], r["answers"][:_MAX_ANSWERS_SAID])
                 for split, name in (("train", "trainmodel.json"), ("validation", "val.json"))
                 for r in json.loads((folder / name).read_text())]  # fmt: skip
    for split, qid, question, answers in items:
        answers = [" ".join(a.split()) for a in answers]
        if not answers or not all(_usable_answer(a) for a in answers) or len(question.split()) > _MAX_QUESTION_WORDS:
            continue
        said = answers[0] if len(answers) == 1 else ", ".join(answers[:-1]) + " and " + answers[-1]
        out[split].append({"id": qid, "source": source, "question": _question(question), "answers": answers,
                           "answer_text": said})  # fmt: skip
    return out


def open_answer_sentence(question: str, answer: str) -> str:
    """A short full sentence that says `answer` to `question` (rules over the question's first words):

    "What is the supreme law of the land?" + "the Constitution" -> "The supreme law of the land is the Constitution."
    "Who plays ken barlow in coronation street?" + "Tony Warren" -> "Tony Warren plays ken barlow in coronation street."
    "Name one state that borders Mexico." + "Texas" -> "One state that borders Mexico is Texas."
    anything else -> "The answer is <answer>."
    """
    q = question.strip().rstrip("?.").strip()
    a = answer.strip().rstrip(".")
    if (m := _NAME.match(q)) and len(m.group(2).split()) >= 1:
        sentence = f"{m.group(1)} {m.group(2)} {'is' if m.group(1).lower() == 'one' else 'are'} {a}"
    elif m := _WHO_VERB.match(q):
        sentence = f"{a} {m.group(1)} {m.group(2)}"
    elif (
        (m := _COPULA.match(q))
        and m.group(1).lower() in ("what", "which", "who")
        and len(m.group(3).split()) >= 2
        and m.group(3).split()[-1].lower() not in _DANGLING
        and " and what" not in m.group(3).lower()
    ):
        subject = m.group(3)
        sentence = f"{subject[:1].upper()}{subject[1:]} {m.group(2).lower()} {a}"
    else:
        sentence = f"The answer is {a}"
    return sentence[:1].upper() + sentence[1:] + "."


def plan_open_dialogues(rows: list[dict], n: int, voices: list[str], rng, text_user_fraction: float) -> list[dict]:
    """Up to `n` one-turn dialogues (seeded sample of `rows`) in the dialogue builder's plan form."""
    order = rng.permutation(len(rows))[:n]
    out = []
    for i in order:
        r = rows[int(i)]
        turn = {"user_sentences": [r["question"]], "user_text": r["question"], "answer": r["answer_text"],
                "assistant_text": open_answer_sentence(r["question"], r["answer_text"])}  # fmt: skip
        out.append({"id": r["id"], "task": 0, "source": r["source"], "voice": voices[int(rng.integers(len(voices)))],
                    "user_modality": "text" if rng.random() < text_user_fraction else "speech", "turns": [turn]})  # fmt: skip
    return out


__all__ = ["OPEN_QA_SOURCES", "load_open_qa", "open_answer_sentence", "plan_open_dialogues"]

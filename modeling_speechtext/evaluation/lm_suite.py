"""The speech-text LM's evaluation suite (issue 20, PAPER.md §6): the `eval` stage and `speechtext eval`.

What it measures, on a pretrained (or any) speech-text LM folder, in float32:
* spoken bAbI QA in four modalities (T->T, S->T, S->S, T->S), by likelihood ranking over the task's answer
  set and by free greedy generation, with chance, on seen and unseen voices (`spoken_qa`);
* spoken cloze: the true last sentence of a story against another story's, S->S, S->T and T->T
  (`spoken_cloze`; a model that ignores the story scores exactly 50% by construction);
* the LM's own ASR WER (speech -> text) and TTS WER (text -> speech tokens, read back by the speech tokenizer's
  ASR head) on the speech corpus's validation (seen voices) and unseen-voice test utterances
  (`lm_transcription`).
The S->S and T->S generations and the TTS are read back by the speech tokenizer's ASR head, so their numbers
include its errors (its own WER is in the speech_tokenizer stage's metrics).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

VOICE_SET_NAMES = {"seen_voices": "seen voices", "unseen_voices": "unseen voices"}
ASR_SPLITS = {"validation": "seen voices", "test_unseen_voices": "unseen voices"}


@dataclass
class EvalConfig:
    """Fields of `recipes/configs/<preset>/eval.yaml`; every path defaults to the run folder's stage."""

    lm: str | None = None
    """The speech-text LM (folder or Hub id): default `run_dir/pretrain`."""
    speech_tokenizer: str | None = None
    spoken_qa: str | None = None
    speech_tokens: str | None = None
    modalities: list[str] = field(default_factory=lambda: ["T->T", "S->T", "S->S", "T->S"])
    max_questions: int | None = None
    """Per voice set (None: all the spoken_qa stage built)."""
    cloze: bool = True
    asr_tts_samples: int = 100
    """Utterances per split for the LM's ASR/TTS WER (0: skip)."""
    batch_size: int = 32
    max_answer_speech_tokens: int = 40
    tts_max_new_tokens: int = 200
    seed: int = 0

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> EvalConfig:
        from modeling_speechtext.stage_config import config_from_dict

        return config_from_dict(cls, config, "eval")

    def validate(self) -> None:
        from modeling_speechtext.evaluation.spoken_qa import MODALITIES

        bad = sorted(set(self.modalities) - set(MODALITIES))
        if bad or not self.modalities:
            raise ValueError(f"eval config: modalities {bad or '[]'} unknown: choose from {list(MODALITIES)}")


def load_lm(path: str | Path):
    """A speech-text LM folder -> (model in float32 eval mode, tokenizer, SpeechVocab); clear errors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.vocab import SpeechVocab, check_model_vocab

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    vocab = SpeechVocab.from_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    check_model_vocab(model, vocab)
    return model, tokenizer, vocab


def asr_reader(speech_tokenizer, batch_size: int = 64):
    """speech ids lists -> text through the speech tokenizer's ASR head (empty in, empty out), batched."""
    import torch

    def transcribe(seqs: list[list[int]]) -> list[str]:
        out = [""] * len(seqs)
        keep = [i for i, s in enumerate(seqs) if len(s) > 0]
        with torch.no_grad():
            for start in range(0, len(keep), batch_size):
                chunk = keep[start : start + batch_size]
                for i, text in zip(chunk, speech_tokenizer.transcribe_tokens([list(seqs[i]) for i in chunk])):
                    out[i] = text
        return out

    return transcribe


def _flat_qa(results: dict[str, dict[int, dict[str, float]]]) -> dict[str, Any]:
    return {m: {str(t): {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for t, r in per.items()}
            for m, per in results.items()}  # fmt: skip


def stories_of(items: list[dict]) -> list[dict]:
    """One story per bAbI story id (its longest told prefix), for the cloze: sentences + their speech."""
    best: dict[str, dict] = {}
    for it in items:
        sid = it["id"].rsplit("-", 1)[0]
        sentences = it["story"].split("\n")
        if len(sentences) >= 2 and (sid not in best or len(sentences) > len(best[sid]["sentences"])):
            best[sid] = {"id": sid, "task": it["task"], "sentences": sentences, "speech": it["story_speech"],
                         "voice": it.get("voice", "")}  # fmt: skip
    return [best[k] for k in sorted(best)]


def evaluate_lm(cfg: EvalConfig, run_dir: str | Path | None, output_dir: str | Path) -> dict[str, Any]:
    """Run the suite; write `metrics.json`, `report.md` and `qa_accuracy.png` into `output_dir`."""
    import random

    from datasets import load_from_disk

    from modeling_speechtext.evaluation.lm_transcription import lm_asr_tts_wer
    from modeling_speechtext.evaluation.spoken_cloze import cloze_accuracy, cloze_items
    from modeling_speechtext.evaluation.spoken_qa import spoken_qa_accuracy
    from modeling_speechtext.evaluation.spoken_qa_data import load_spoken_qa
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    start = time.perf_counter()
    run = Path(run_dir) if run_dir else None
    pick = lambda value, default: value or (str(run / default) if run else None)  # noqa: E731
    paths = {"lm": pick(cfg.lm, "pretrain"), "speech_tokenizer": pick(cfg.speech_tokenizer, "speech_tokenizer"),
             "spoken_qa": pick(cfg.spoken_qa, "spoken_qa"),
             "speech_tokens": pick(cfg.speech_tokens, "speech_tokens/dataset")}  # fmt: skip
    for name in ("lm", "speech_tokenizer", "spoken_qa"):
        if paths[name] is None:
            raise ValueError(f"eval: no {name}: give it or a run folder")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer, vocab = load_lm(paths["lm"])
    st_model, _ = load_speech_tokenizer(paths["speech_tokenizer"])
    if st_model.config.codebook_size != vocab.codebook_size:
        raise ValueError(f"eval: the LM has {vocab.codebook_size} speech tokens, the speech tokenizer "
                         f"{paths['speech_tokenizer']} a codebook of {st_model.config.codebook_size}")  # fmt: skip
    transcribe = asr_reader(st_model)
    data = load_spoken_qa(paths["spoken_qa"])
    metrics: dict[str, Any] = {"paths": paths, "config": asdict(cfg), "spoken_qa": {}, "cloze": {}}
    for vset, items in data["items"].items():
        if cfg.max_questions:
            items = random.Random(cfg.seed).sample(items, min(cfg.max_questions, len(items)))
        logger.info("eval: spoken QA, %s, %d questions, %s", vset, len(items), cfg.modalities)
        qa = spoken_qa_accuracy(
            model, tokenizer, vocab, items, data["answer_sets"], cfg.modalities, answer_speech=data["answer_speech"],
            transcribe=transcribe, batch_size=cfg.batch_size, max_answer_speech_tokens=cfg.max_answer_speech_tokens,
        )  # fmt: skip
        metrics["spoken_qa"][vset] = _flat_qa(qa)
        if cfg.cloze:
            # pairs within one voice: across voices a spoken distractor would give itself away by its speaker
            by_voice: dict[str, list[dict]] = {}
            for story in stories_of(data["items"][vset]):
                by_voice.setdefault(story["voice"], []).append(story)
            cloze = [it for group in by_voice.values() if len(group) >= 2 for it in cloze_items(group, cfg.seed)]
            if cloze:
                metrics["cloze"][vset] = cloze_accuracy(model, tokenizer, vocab, cloze, batch_size=cfg.batch_size)
    metrics["lm_asr_tts"] = {}
    if cfg.asr_tts_samples and paths["speech_tokens"] and Path(paths["speech_tokens"]).exists():
        tokens = load_from_disk(paths["speech_tokens"])
        for split in ASR_SPLITS:
            if split not in tokens:
                continue
            usable = tokens[split].filter(lambda r: bool(r["speech_ids"]) and bool((r["text"] or "").strip()))
            rows = usable.shuffle(seed=cfg.seed).select(range(min(cfg.asr_tts_samples, len(usable))))
            logger.info("eval: the LM's ASR and TTS on %d %s utterances", len(rows), split)
            metrics["lm_asr_tts"][split] = lm_asr_tts_wer(
                model, tokenizer, vocab, list(rows), transcribe, batch_size=cfg.batch_size,
                tts_max_new_tokens=cfg.tts_max_new_tokens,
            )  # fmt: skip
    metrics["headline"] = headline(metrics)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (output_dir / "report.md").write_text(report(metrics))
    plot_qa(metrics, output_dir / "qa_accuracy.png")
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a stage.json and a model card carry: task-1 S->T and T->T (ranked) with chance."""
    out = {}
    for vset, per in metrics["spoken_qa"].items():
        for modality in ("T->T", "S->T", "S->S", "T->S"):
            task1 = per.get(modality, {}).get("1")
            if task1:
                key = f"{modality}_task1_{vset}"
                out[f"{key}_ranked"], out[f"{key}_generated"] = task1["ranked"], task1["generated"]
                out["task1_chance"] = task1["chance"]
    for split, r in metrics.get("lm_asr_tts", {}).items():
        out[f"lm_asr_wer_{split}"], out[f"lm_tts_wer_{split}"] = r.get("asr_wer"), r.get("tts_wer")
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def report(metrics: dict[str, Any]) -> str:
    """`report.md`: one table per voice set (task x modality, ranked / generated, chance), cloze, ASR/TTS."""
    lines = ["# Speech-text LM evaluation", "", f"LM: `{metrics['paths']['lm']}`", "",
             "Accuracy in % (likelihood ranking over the task's answer set / free greedy generation).", ""]  # fmt: skip
    for vset, per in metrics["spoken_qa"].items():
        modalities = list(per)
        tasks = sorted({t for m in per.values() for t in m}, key=int)
        lines += [f"## Spoken bAbI QA, {VOICE_SET_NAMES.get(vset, vset)}", "",
                  "| task | n | chance | " + " | ".join(f"{m} ranked / gen." for m in modalities) + " | gap S->T vs T->T |",
                  "|---|---|---|" + "---|" * len(modalities) + "---|"]  # fmt: skip
        for t in tasks:
            first = next(per[m][t] for m in modalities if t in per[m])
            cells = [f"{_pct(per[m][t]['ranked'])} / {_pct(per[m][t]['generated'])}" if t in per[m] else "-"
                     for m in modalities]  # fmt: skip
            gap = "-"
            if "S->T" in per and "T->T" in per and t in per["S->T"] and t in per["T->T"]:
                gap = f"{100 * (per['S->T'][t]['ranked'] - per['T->T'][t]['ranked']):+.1f}"
            lines.append(f"| {t} | {first['n']} | {_pct(first['chance'])} | " + " | ".join(cells) + f" | {gap} |")
        lines.append("")
    if metrics.get("cloze"):
        lines += ["## Spoken cloze (true ending vs another story's; context-free control = 50% by construction)", "",
                  "| voices | modality | n | accuracy (sum log p) | accuracy (mean log p) | context-free |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for vset, per in metrics["cloze"].items():
            for modality, r in per.items():
                lines.append(f"| {VOICE_SET_NAMES.get(vset, vset)} | {modality} | {r.get('n')} | {_pct(r.get('accuracy'))}"
                             f" | {_pct(r.get('accuracy_mean_logprob'))} | {_pct(r.get('context_free_accuracy'))} |")  # fmt: skip
        lines.append("")
    if metrics.get("lm_asr_tts"):
        lines += ["## The LM's own ASR and TTS (WER %, TTS read back by the speech tokenizer's ASR head)", "",
                  "| utterances | n | ASR WER | TTS WER | TTS runaway |", "|---|---|---|---|---|"]  # fmt: skip
        for split, r in metrics["lm_asr_tts"].items():
            lines.append(f"| {ASR_SPLITS.get(split, split)} | {r.get('n')} | {_pct(r.get('asr_wer'))} | "
                         f"{_pct(r.get('tts_wer'))} | {_pct(r.get('tts_runaway'))} |")  # fmt: skip
        lines.append("")
    lines.append(f"Took {metrics.get('seconds', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def plot_qa(metrics: dict[str, Any], path: Path) -> None:
    """Grouped bars: ranked accuracy per task and modality, one panel per voice set, chance as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(metrics["spoken_qa"])
    if not sets:
        return
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.5), squeeze=False)
    for ax, vset in zip(axes[0], sets):
        per = metrics["spoken_qa"][vset]
        modalities = list(per)
        tasks = sorted({t for m in per.values() for t in m}, key=int)
        width = 0.8 / max(len(modalities), 1)
        for k, m in enumerate(modalities):
            ax.bar([i + k * width for i in range(len(tasks))], [per[m].get(t, {}).get("ranked", 0) for t in tasks],
                   width, label=m)  # fmt: skip
        for i, t in enumerate(tasks):
            chance = next(per[m][t]["chance"] for m in modalities if t in per[m])
            ax.hlines(chance, i - width / 2, i + 0.8 - width / 2, colors="k", linestyles="dashed")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], [f"task {t}" for t in tasks])
        ax.set_ylim(0, 1)
        ax.set_title(f"spoken bAbI QA, {VOICE_SET_NAMES.get(vset, vset)} (ranked; dashed: chance)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def score_manifest(
    manifest: str | Path, lm: str | Path, speech_tokenizer: str | Path, batch_size: int = 32
) -> dict[str, Any]:
    """Accuracy per task on a user's spoken QA manifest (`spoken_qa_data.read_manifest`): S->T ranked and
    generated, and T->T when every record has its text. The candidates of a task are the answers that occur for
    that task in the manifest (chance = 1 / their number)."""
    from modeling_speechtext.evaluation.spoken_qa import spoken_qa_accuracy
    from modeling_speechtext.evaluation.spoken_qa_data import read_manifest, tokenize_records
    from modeling_speechtext.generation.speech_tokenization import load_speech_tokenizer

    records = read_manifest(manifest)
    model, tokenizer, vocab = load_lm(lm)
    st_model, fe = load_speech_tokenizer(speech_tokenizer)
    if st_model.config.codebook_size != vocab.codebook_size:
        raise ValueError(f"the LM {lm} has {vocab.codebook_size} speech tokens, the speech tokenizer "
                         f"{speech_tokenizer} a codebook of {st_model.config.codebook_size}")  # fmt: skip
    items = tokenize_records(records, st_model, fe, progress=True)
    answer_sets: dict[int, list[str]] = {}
    from modeling_speechtext.text_normalization import normalize_text

    for it in items:  # "Garden" and "garden" are one candidate
        known = answer_sets.setdefault(it["task"], [])
        if normalize_text(it["answer"]) not in {normalize_text(a) for a in known}:
            known.append(it["answer"])
    single = sorted(t for t, a in answer_sets.items() if len(a) < 2)
    if single:
        logger.warning("tasks %s have one distinct answer in the manifest: ranking there is trivial", single)
    modalities = ["T->T", "S->T"] if all("story" in it for it in items) else ["S->T"]
    qa = spoken_qa_accuracy(model, tokenizer, vocab, items, answer_sets, modalities, batch_size=batch_size)
    return {"manifest": str(manifest), "lm": str(lm), "questions": len(items),
            "answer_sets": {str(t): a for t, a in answer_sets.items()}, "accuracy": _flat_qa(qa)}  # fmt: skip


CARD_MARK = ("<!-- speechtext-eval -->", "<!-- /speechtext-eval -->")


def add_to_card(lm_folder: Path, metrics: dict[str, Any]) -> None:
    """Put the report (between markers: rerunning replaces it) into the LM folder's model card."""
    card = lm_folder / "README.md"
    if not card.is_file():
        return
    text = card.read_text()
    if CARD_MARK[0] in text:
        text = text[: text.index(CARD_MARK[0])].rstrip() + text[text.index(CARD_MARK[1]) + len(CARD_MARK[1]) :]
    body = report(metrics).replace("# Speech-text LM evaluation", "## Evaluation (`speechtext eval`)", 1)
    card.write_text(f"{text.rstrip()}\n\n{CARD_MARK[0]}\n{body.replace(chr(10) + '## ', chr(10) + '### ')}{CARD_MARK[1]}\n")


def run_stage(config: dict, output_dir: Path, run_dir: Path) -> dict:
    """Pipeline entry (`eval`): the suite on `run_dir/pretrain`; the headline numbers go into stage.json and the
    report into the LM's model card."""
    metrics = evaluate_lm(EvalConfig.from_dict(config), run_dir, output_dir)
    add_to_card(Path(metrics["paths"]["lm"]), metrics)
    return {**metrics["headline"], "seconds": metrics["seconds"]}


__all__ = ["EvalConfig", "add_to_card", "evaluate_lm", "headline", "load_lm", "report", "run_stage", "score_manifest", "stories_of"]

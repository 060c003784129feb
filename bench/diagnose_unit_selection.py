"""How far can *real* speech get? Resynthesis by unit selection, as a ceiling for token-local decoding.

    .venv/bin/python bench/diagnose_unit_selection.py --run_dir runs/tiny --decoder runs/tiny/speech_decoder \
        --voice flite:rms --bank_run_dir runs/tiny --refine_t0 1.0,0.5

For each speech token of a validation utterance, one 80 ms segment of *real* log-mel of the target voice is
picked from a bank (the training utterances of that voice in `--bank_run_dir`): a segment with the same token
whose neighbouring tokens (+-1 weight 1, +-2 weight 0.5; `--context`) match best, with a join cost (mean absolute mel jump at
the border) to break ties, and the next segment of the same utterance kept whenever it carries the next token
(classic concatenative synthesis). The concatenated mel is vocoded with the decoder's vocoder and judged by the
tokenizer's ASR, exactly as the decoder's resynthesis WER is. Sharp, real, right-voice frames with no model in
between: if this scores far from the original-audio WER, the gap is in what the tokens say about the sound (their
context dependence), not only in the decoder's capacity.

`--refine_t0 t` (< 1) also starts the decoder's flow at time `t` from the selected mel (SDEdit): noise
`(1 - t) x0 + t x_selected`, integrated to 1 with the decoder's Euler steps, so the model smooths the joins.

Writes a JSON report (and prints it).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch
from decoder_diagnostics_common import add_common_arguments, finish_report, load_decoder_and_judge, sample_rows

CONTEXT_WEIGHTS = ((-1, 1.0), (1, 1.0), (-2, 0.5), (2, 0.5))


class UnitBank:
    """Real log-mel segments (one per token) of one voice, indexed by token id."""

    def __init__(self, utterances: list[tuple[list[int], torch.Tensor]], frames_per_token: int, max_candidates: int,
                 context: int = 2):  # fmt: skip
        self.utterances, self.fpt, self.max_candidates = utterances, frames_per_token, max_candidates
        self.context_weights = [(off, w) for off, w in CONTEXT_WEIGHTS if abs(off) <= context]
        self.index: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for u, (ids, _) in enumerate(utterances):
            for p, t in enumerate(ids):
                self.index[t].append((u, p))

    def segment(self, u: int, p: int):
        return self.utterances[u][1][p * self.fpt : (p + 1) * self.fpt]

    def _context_cost(self, ids: list[int], i: int, u: int, p: int) -> float:
        toks = self.utterances[u][0]
        cost = 0.0
        for off, weight in self.context_weights:
            q, j = p + off, i + off
            if not (0 <= q < len(toks) and 0 <= j < len(ids) and toks[q] == ids[j]):
                cost += weight
        return cost

    def select(self, ids: list[int], join_weight: float, silence: float):
        """The concatenated mel `[len(ids) * fpt, n_mels]` and how many tokens had no segment (silence instead)."""
        n_mels = self.utterances[0][1].shape[1]
        out, prev, missing = [], None, 0
        for i, t in enumerate(ids):
            if prev is not None:  # continue the previous utterance when it says the same next token
                u, p = prev
                if p + 1 < len(self.utterances[u][0]) and self.utterances[u][0][p + 1] == t:
                    prev = (u, p + 1)
                    out.append(self.segment(*prev))
                    continue
            candidates = self.index.get(t, [])[: self.max_candidates]
            if not candidates:
                missing += 1
                prev = None
                out.append(torch.full((self.fpt, n_mels), silence))
                continue
            last = out[-1][-1] if out else None

            def cost(c, last=last, i=i):
                join = 0.0 if last is None else join_weight * float((self.segment(*c)[0] - last).abs().mean())
                return self._context_cost(ids, i, *c) + join

            prev = min(candidates, key=cost)
            out.append(self.segment(*prev))
        return torch.cat(out), missing


def refine(decoder, ids: list[int], mel, t0: float, seed: int = 0):
    """SDEdit: start the decoder's flow at time `t0` from `mel` and integrate to 1 with its own Euler steps."""
    c = decoder.config
    with torch.no_grad():
        input_ids = torch.tensor([ids])
        mu = decoder._condition(decoder.encoder(input_ids, torch.ones_like(input_ids)), None)
        noise = decoder._noise(torch.Generator().manual_seed(seed), len(ids))[None]
        x = (1 - (1 - c.sigma_min) * t0) * noise + t0 * decoder.normalize_mel(mel)[None]
        grid = t0 + (1 - t0) * (1 - torch.cos(torch.linspace(0, 1, c.num_steps + 1) * 0.5 * math.pi))
        positions = torch.arange(mu.shape[1])
        frame_mask = torch.ones(1, mu.shape[1], dtype=torch.bool)
        for s in range(c.num_steps):
            v = decoder._velocity(x, grid[s], mu, positions, frame_mask, c.cfg_strength)
            x = x + (grid[s + 1] - grid[s]) * v
    return decoder.denormalize_mel(x)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, samples=50)
    parser.add_argument("--bank_run_dir", default=None, help="where the bank's training utterances come from")
    parser.add_argument("--voice", required=True, help="the bank's (output) voice, e.g. flite:rms")
    parser.add_argument("--join_weight", type=float, default=0.5)
    parser.add_argument("--context", type=int, default=2, choices=(0, 1, 2), help="neighbouring tokens matched")
    parser.add_argument("--max_candidates", type=int, default=1500)
    parser.add_argument("--refine_t0", default="1.0", help="comma-separated; 1.0 = the selected mel as is")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    from modeling_speechtext.evaluation import speech_decoder as ev
    from recipes.train_speech_decoder import DataArguments, _load_splits, _waveform

    decoder, tokenizer, fe = load_decoder_and_judge(args)
    run = Path(args.run_dir)
    start = time.perf_counter()
    bank_rows, bank_audio = _load_splits(DataArguments(run_dir=args.bank_run_dir or str(run)))["train"]
    bank_rows = [r for r in bank_rows if r["voice"] == args.voice and len(r["speech_ids"])]
    if not bank_rows:
        raise ValueError(f"no training utterances of voice {args.voice!r} for the bank")
    utterances = [
        (list(r["speech_ids"]), decoder.extract_mel(_waveform(bank_audio, r["audio_index"]), len(r["speech_ids"])))
        for r in bank_rows
    ]
    bank = UnitBank(utterances, decoder.config.frames_per_token, args.max_candidates, args.context)
    report: dict = {"voice": args.voice, "bank_utterances": len(utterances), "codes_in_bank": len(bank.index)}
    bank_texts = {r["text"] for r in bank_rows}
    splits = _load_splits(DataArguments(run_dir=str(run)))
    for split in ("validation", "test_unseen_voices"):
        if split not in splits:
            continue
        rows, _ = sample_rows(splits, split, args.samples, args.seed)
        texts, tokens = [r["text"] for r in rows], [list(r["speech_ids"]) for r in rows]
        selected = [bank.select(t, args.join_weight, float(decoder.mel_extractor.silence)) for t in tokens]
        entry = {
            "wer_original": round(ev.word_error_rate(texts, tokenizer.transcribe_tokens(tokens)), 4),
            "tokens_without_segment": sum(m for _, m in selected),
            "sentences_also_in_bank": sum(t in bank_texts for t in texts),
        }
        for t0 in (float(x) for x in args.refine_t0.split(",")):
            mels = [m if t0 >= 1 else refine(decoder, ids, m, t0) for ids, (m, _) in zip(tokens, selected)]
            waves = [decoder.vocode(m[None])[0] for m in mels]
            hyps = ev.transcribe_waveforms(tokenizer, fe, waves)
            entry[f"wer_t0_{t0:g}"] = round(ev.word_error_rate(texts, hyps), 4)
        report[split] = entry
        print(split, json.dumps(entry), flush=True)
    finish_report(report, start, args.output)


if __name__ == "__main__":
    main()

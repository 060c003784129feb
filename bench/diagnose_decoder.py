"""Why is resynthesis poor? Baselines and sweeps that separate the decoder, the vocoder and the ASR judge.

    .venv/bin/python bench/diagnose_decoder.py --run_dir runs/tiny --samples 40 --output runs/tiny/speech_decoder/diagnosis.json

On `--samples` validation utterances (and as many training ones), with the run's tokenizer as judge:

1. `train_resynthesis`: resynthesis WER / mel L1 on *training* utterances (each in its own voice). As bad as on
   validation = underfitting; much better = overfitting.
2. `lookup_table`: the mean mel of every (token, frame-in-token) over the training set, no context, no voice,
   vocoded. What a decoder that learned nothing beyond a table would score.
3. `blur`: Griffin-Lim of the *true* mel after a 3-bin x k-frame box blur: how much smearing the judge tolerates.
4. `sweep`: resynthesis WER by output voice, Euler steps and CFG strength.

Writes a JSON report (and prints it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from decoder_diagnostics_common import add_common_arguments, finish_report, load_decoder_and_judge
from decoder_diagnostics_common import sample_rows as _rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, samples=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from modeling_speechtext.evaluation import speech_decoder as ev
    from recipes.train_speech_decoder import DataArguments, _load_splits, _waveform

    decoder, tokenizer, fe = load_decoder_and_judge(args)
    run = Path(args.run_dir)
    splits = _load_splits(DataArguments(run_dir=str(run)))
    names = decoder.config.voice_names
    report: dict = {"decoder": str(args.decoder or run / "speech_decoder"), "samples": args.samples}
    start = time.perf_counter()

    def wer(texts, waves):
        return round(ev.word_error_rate(texts, ev.transcribe_waveforms(tokenizer, fe, waves)), 4)

    def true_mels(rows, audio):
        return [decoder.extract_mel(_waveform(audio, r["audio_index"]), num_tokens=len(r["speech_ids"])) for r in rows]

    # 1. training utterances, each in its own voice
    rows, audio = _rows(splits, "train", args.samples, args.seed)
    texts, tokens, true = [r["text"] for r in rows], [list(r["speech_ids"]) for r in rows], true_mels(rows, audio)
    mels, waves = [None] * len(rows), [None] * len(rows)
    for voice in sorted({r["voice"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["voice"] == voice]
        m, w = ev.decode_batched(decoder, [tokens[i] for i in idx], voice=voice if voice in names else None)
        for i, mi, wi in zip(idx, m, w):
            mels[i], waves[i] = mi, wi
    report["train_resynthesis"] = {
        "wer": wer(texts, waves),
        "mel_l1": round(sum(map(ev.mel_l1, mels, true)) / len(rows), 4),
        "wer_original": round(ev.word_error_rate(texts, tokenizer.transcribe_tokens(tokens)), 4),
    }
    print(json.dumps(report["train_resynthesis"]), flush=True)

    # 2. lookup table over the whole training split
    fpt, n_mels, k = decoder.config.frames_per_token, decoder.config.n_mels, decoder.config.codebook_size
    sums, counts = torch.zeros(k, fpt, n_mels), torch.zeros(k, 1, 1)
    train_rows, train_audio = splits["train"]
    for r in train_rows:
        ids = torch.tensor(r["speech_ids"])
        if len(ids) == 0:
            continue
        mel = decoder.extract_mel(_waveform(train_audio, r["audio_index"]), num_tokens=len(ids)).view(
            len(ids), fpt, -1
        )
        sums.index_add_(0, ids, mel)
        counts.index_add_(0, ids, torch.ones(len(ids), 1, 1))
    table = torch.where(counts > 0, sums / counts.clamp(min=1), sums.sum(0) / counts.sum())
    rows, audio = _rows(splits, "validation", args.samples, args.seed)
    texts, tokens, true = [r["text"] for r in rows], [list(r["speech_ids"]) for r in rows], true_mels(rows, audio)
    looked_up = [table[torch.tensor(t)].reshape(-1, n_mels) for t in tokens]
    report["lookup_table"] = {
        "wer": wer(texts, [decoder.vocode(m[None])[0] for m in looked_up]),
        "mel_l1": round(sum(map(ev.mel_l1, looked_up, true)) / len(rows), 4),
        "codes_seen": int((counts > 0).sum()),
    }
    print(json.dumps(report["lookup_table"]), flush=True)

    # 3. how much smearing the judge tolerates
    report["blur"] = {}
    for width in (1, 3, 5, 9):
        blurred = []
        for m in true:
            x = m.T[None, None]
            if width > 1:
                x = F.avg_pool2d(x, (3, width), stride=1, padding=(1, width // 2), count_include_pad=False)
            blurred.append(x[0, 0].T)
        report["blur"][f"frames_{width}"] = {
            "wer": wer(texts, [decoder.vocode(b[None])[0] for b in blurred]),
            "mel_l1": round(sum(map(ev.mel_l1, blurred, true)) / len(rows), 4),
        }
    print(json.dumps(report["blur"]), flush=True)

    # 4. output voice, Euler steps, CFG
    target = decoder.config.default_voice
    c = decoder.config
    settings = [(target, c.num_steps, c.cfg_strength), (target, c.num_steps, 0.0), (target, c.num_steps, 2.0)]
    settings += [(target, 3 * c.num_steps, c.cfg_strength)]
    settings += [(v, c.num_steps, c.cfg_strength) for v in names[:: max(1, len(names) // 4)] if v != target]
    report["sweep"] = []
    for voice, steps, cfg in settings:
        _, waves = ev.decode_batched(decoder, tokens, voice=voice, num_steps=steps, cfg_strength=cfg)
        report["sweep"].append({"voice": voice, "num_steps": steps, "cfg_strength": cfg, "wer": wer(texts, waves)})
        print(json.dumps(report["sweep"][-1]), flush=True)
    report["wer_original_validation"] = round(ev.word_error_rate(texts, tokenizer.transcribe_tokens(tokens)), 4)
    finish_report(report, start, args.output)


if __name__ == "__main__":
    main()

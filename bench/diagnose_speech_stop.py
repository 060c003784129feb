"""Why does the SFT model's final speech chunk not stop? Teacher-forced probabilities on held-out dialogues.

For each validation dialogue's first assistant turn (its own data, exactly as trained), the LM's probability of
`<|end_of_audio|>` at every position of the final speech chunk: at the true end (where the data stops) and
elsewhere, with the rank of `<|end_of_audio|>` among all tokens the layout allows there (speech tokens + the
marker). Greedy decoding stops only where the marker outranks every speech token.

    python bench/diagnose_speech_stop.py --run runs/demo
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--model", help="LM folder (default: <run>/sft)")
    parser.add_argument("--dialogues", type=int, default=40)
    args = parser.parse_args()
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_speechtext.data.dialogue import dialogue_messages, layout_from_tokenizer

    run = Path(args.run)
    path = args.model or run / "sft"
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    sizes = {k: lm.config.speech_text[k] for k in ("text_chunk", "speech_chunk")}
    lay = layout_from_tokenizer(tok, **sizes)
    rows = load_dataset(str(run / "dialogue"), split="validation")
    rows = rows.select(range(min(args.dialogues, len(rows))))
    at_end, before, ranks, greedy_len, true_len = [], [], [], [], []
    for row in rows:
        row = {**row, "turns": row["turns"][:1]}
        messages = dialogue_messages(row, tok, lay)
        prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
        full = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        n = len(prompt["input_ids"])
        with torch.no_grad():
            probs = lm(input_ids=torch.tensor([full])).logits[0].float().softmax(-1)
        turn = full[n:]
        last_boa = n + max(i for i, t in enumerate(turn) if t == lay.begin_of_audio_id)
        end = full.index(lay.end_of_audio_id, last_boa)  # position of the final <eoa>
        speech = slice(lay.audio_offset, lay.audio_offset + lay.codebook_size)
        for pos in range(last_boa + 2, end + 1):  # predictions of tokens last_boa+2 .. end (>= 1 speech token)
            p = probs[pos - 1]
            p_end = p[lay.end_of_audio_id].item()
            (at_end if pos == end else before).append(p_end)
            if pos == end:
                ranks.append(int((p[speech] > p_end).sum().item()) + 1)
        true_len.append(end - last_boa - 1)
        # where would greedy stop (teacher-forced up to the final chunk, then the model's own argmax)
        ids = full[: last_boa + 1]
        count = 0
        with torch.no_grad():
            while count < 150:
                p = lm(input_ids=torch.tensor([ids])).logits[0, -1]
                allowed = p[speech].max().item()
                if count >= 1 and p[lay.end_of_audio_id].item() > allowed:
                    break
                ids.append(lay.audio_offset + int(p[speech].argmax()))
                count += 1
        greedy_len.append(count)
    report = {
        "model": str(path), "dialogues": len(rows),
        "p_eoa_at_true_end_median": statistics.median(at_end), "p_eoa_before_end_median": statistics.median(before),
        "p_eoa_at_true_end_mean": statistics.mean(at_end), "eoa_rank_at_true_end_median": statistics.median(ranks),
        "eoa_top1_at_true_end": sum(r == 1 for r in ranks) / len(ranks),
        "final_chunk_tokens_data_mean": statistics.mean(true_len), "final_chunk_tokens_greedy_mean": statistics.mean(
            greedy_len), "greedy_hit_150_cap": sum(g >= 150 for g in greedy_len),
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Why does the SFT model's final speech chunk not stop? Teacher-forced probabilities on held-out dialogues.

For each validation dialogue's first assistant turn (its own data, exactly as trained), the LM's probability of
`<|end_of_audio|>` at every position of the final speech chunk: at the true end (where the data stops) and
elsewhere, with the rank of `<|end_of_audio|>` among all tokens the layout allows there (speech tokens + the
marker). Greedy decoding stops only where the marker outranks every speech token; "greedy" below is where `generate` under
the layout processor stops when the turn is teacher-forced up to its final `<|begin_of_audio|>`.

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
    parser.add_argument("--do_sample", action="store_true", help="sample the final chunk instead of greedy")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--repetition_penalty", type=float, default=1.0)
    args = parser.parse_args()
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

    from modeling_speechtext.data.dialogue import dialogue_messages, layout_from_tokenizer
    from modeling_speechtext.models.speech_text.logits_process_speech_text import StreamingThoughtsLogitsProcessor

    run = Path(args.run)
    path = args.model or run / "sft"
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    sizes = {k: lm.config.speech_text[k] for k in ("text_chunk", "speech_chunk")}
    lay = layout_from_tokenizer(tok, **sizes)
    rows = load_dataset(str(run / "dialogue"), split="validation")
    rows = rows.select(range(min(args.dialogues, len(rows))))
    at_end, before, ranks, greedy_len, true_len, repeats, data_repeats = [], [], [], [], [], [], []
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
        # where greedy stops: teacher-forced up to the final <boa>, then generate under the layout processor
        # (its own prompt_length is the turn start, so only speech or <eoa> can come next)
        prefix = torch.tensor([full[: last_boa + 1]])
        rule = LogitsProcessorList([StreamingThoughtsLogitsProcessor(lay, n)])
        with torch.no_grad():
            torch.manual_seed(0)
            sampling = (
                dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=0) if args.do_sample else {}
            )
            gen = lm.generate(prefix, attention_mask=torch.ones_like(prefix), logits_processor=rule, max_new_tokens=150,
                              eos_token_id=lay.end_of_audio_id, pad_token_id=lay.eos_token_id,
                              repetition_penalty=args.repetition_penalty, **({"do_sample": False} | sampling))  # fmt: skip
        own = [t for t in gen[0, prefix.shape[1] :].tolist() if lay.is_speech(t)]
        count = len(own)
        repeats.append(sum(a == b for a, b in zip(own, own[1:])) / max(1, len(own) - 1))
        data_speech = [t for t in full[last_boa + 1 : end] if lay.is_speech(t)]
        data_repeats.append(sum(a == b for a, b in zip(data_speech, data_speech[1:])) / max(1, len(data_speech) - 1))
        greedy_len.append(count)
    report = {
        "model": str(path), "dialogues": len(rows),
        "p_eoa_at_true_end_median": statistics.median(at_end), "p_eoa_before_end_median": statistics.median(before),
        "p_eoa_at_true_end_mean": statistics.mean(at_end), "decoding": {k: getattr(args, k) for k in
        ("do_sample", "temperature", "top_p", "repetition_penalty")}, "own_speech_repeat_rate": statistics.mean(
            repeats), "data_speech_repeat_rate": statistics.mean(data_repeats), "eoa_rank_at_true_end_median": statistics.median(ranks),
        "eoa_top1_at_true_end": sum(r == 1 for r in ranks) / len(ranks),
        "final_chunk_tokens_data_mean": statistics.mean(true_len), "final_chunk_tokens_greedy_mean": statistics.mean(
            greedy_len), "greedy_hit_150_cap": sum(g >= 150 for g in greedy_len),
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Model cards (README.md) for the models speechtext trains, written next to the weights.

Why our own: TRL's `SFTTrainer` drops a generic chat-model card into every output folder ("fine-tuned version of
[None]", a chat `pipeline` snippet) that is wrong for a text-to-speech-token model and would be pushed to the Hub
as is. The card here says what the model does, how to load it, and the numbers measured when it was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# metric key -> row label, in the order the evaluation table shows them
_T2T_EVAL_ROWS = {
    "tts_wer": "TTS WER (speech tokenizer's ASR on synthesized tokens)",
    "real_token_wer": "WER of the same judge on real tokens of the same sentences",
    "tts_over_real": "TTS WER / real-token WER",
    "tts_wer_greedy": "TTS WER, greedy decoding",
    "n_sentences": "held-out sentences",
    "chosen_temperature": "synthesis temperature (0 = greedy), chosen on other held-out sentences",
    "chosen_mbr": "minimum-Bayes-risk decoding chosen (consensus of greedy, beams and samples)",
    "tune_tts_wer_mbr": "TTS WER of MBR decoding on the tuning sentences",
    "runaway_fraction": "generations cut by the tokens-per-character guard",
    "synthesis_tokens_per_second": "synthesis speed (speech tokens/s, this run's machine)",
}
_T2T_TRAIN_ROWS = {
    "train_examples": "(text, speech tokens) pairs",
    "steps": "optimizer steps",
    "train_loss": "mean training loss (speech tokens only)",
    "eval_loss": "held-out loss",
    "params": "parameters",
    "codebook_size": "speech codebook size",
    "vocab_size": "vocabulary (text + speech + markers)",
    "seconds": "wall time (s)",
}


def _table(metrics: Mapping[str, Any], rows: Mapping[str, str]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, label in rows.items():
        if key in metrics and metrics[key] is not None:
            value = metrics[key]
            lines.append(f"| {label} | {round(value, 4) if isinstance(value, float) else value} |")
    return "\n".join(lines)


def text_to_token_card(metrics: Mapping[str, Any], model_type: str, data: str | None = None) -> str:
    """The README.md of a text-to-token model folder, from its training `metrics`."""
    from huggingface_hub import ModelCard, ModelCardData

    data_line = f"Trained on `{data}`." if data else ""
    card_data = ModelCardData(
        library_name="transformers", tags=["speechtext", "text-to-speech-tokens", "glm-4-voice", model_type]
    )
    body = f"""
# Text-to-token model (speechtext)

A plain `{model_type}` causal LM that reads text and writes the discrete speech tokens a speech tokenizer would
produce for that text spoken aloud ({metrics.get("codebook_size", "?")}-entry codebook, `<|audio_0|>`...). No
audio is synthesized: this model is what turns text spans into speech spans when building synthetic interleaved
speech-text data (GLM-4-Voice recipe). The loss covered the speech side only. {data_line}

## Use

```python
from modeling_speechtext.text_to_token import TextToTokenSynthesizer

synth = TextToTokenSynthesizer.from_pretrained("path/or/repo")
speech_ids = synth.synthesize(["john went to the kitchen"], seed=0)  # one list of codebook ids per text
```

Plain transformers works too: the prompt is `text<|begin_of_audio|>`, generation ends at `<|end_of_audio|>`
(`AutoModelForCausalLM` + `AutoTokenizer`); the synthesizer adds batching, the speech-only logits mask and the
runaway guard. Settings it uses are in `synthesis_config.json`.

## Evaluation

{_table(metrics, _T2T_EVAL_ROWS)}

The judge is the speech tokenizer's own ASR head, so the real-token WER is the reference point (what real speech scores).

## Training

{_table(metrics, _T2T_TRAIN_ROWS)}

![loss curve](loss_curve.png)
"""
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}"))


__all__ = ["text_to_token_card"]

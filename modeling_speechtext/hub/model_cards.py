"""Model cards (README.md) for the models speechtext trains, written next to the weights by each recipe.

Why our own: a folder without a card reaches the Hub as a nameless blob, and TRL's `SFTTrainer` drops a generic
chat-model card ("fine-tuned version of [None]", a chat `pipeline` snippet) into the text-to-token folder that is
wrong for it. Each card here says what the model does, how to load it, and the numbers measured when it was
trained (from the recipe's `metrics.json`), next to the plots the recipe saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# metric key -> row label, in the order the tables show them
_T2T_EVAL_ROWS = {
    "tts_wer": "TTS WER (speech tokenizer's ASR on synthesized tokens)",
    "real_token_wer": "WER of the same judge on real tokens of the same sentences",
    "tts_over_real": "TTS WER / real-token WER",
    "tts_wer_greedy": "TTS WER, greedy decoding (runaways re-drawn if runaway_retries)",
    "n_sentences": "held-out sentences",
    "chosen_temperature": "synthesis temperature (0 = greedy), chosen on other held-out sentences",
    "chosen_mbr": "minimum-Bayes-risk decoding chosen (consensus of greedy, beams and samples)",
    "tune_tts_wer_mbr": "TTS WER of MBR decoding on the tuning sentences",
    "runaway_fraction": "generations cut by the tokens-per-character guard",
    "runaway_fraction_before_retries": "... before re-drawing them (runaway_retries)",
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
_TOKENIZER_EVAL_ROWS = {
    "validation_wer": "ASR WER through the tokens, validation voices",
    "test_unseen_voices_wer": "ASR WER through the tokens, unseen voices",
    "validation_codebook_usage": "codebook usage (fraction of codes used), validation",
    "validation_codebook_perplexity": "codebook perplexity, validation",
    "validation_encode_audio_seconds_per_second": "encoding speed (audio s per s, this run's machine)",
}
_TOKENIZER_TRAIN_ROWS = {
    "frame_rate": "token rate (Hz)",
    "codebook_size": "codebook size",
    "bitrate": "bitrate (bit/s)",
    "parameters": "parameters",
    "steps": "optimizer steps",
    "training_clips": "training clips",
    "training_audio_hours": "training audio (h)",
    "train_minutes": "wall time (min)",
}
_DECODER_EVAL_ROWS = {
    "wer_resynthesis_validation": "resynthesis WER (audio -> tokens -> this decoder -> tokenizer ASR), validation",
    "wer_original_validation": "the same ASR on the original audio's tokens, validation",
    "wer_resynthesis_test_unseen_voices": "resynthesis WER, unseen voices",
    "wer_original_test_unseen_voices": "the same ASR on the original audio's tokens, unseen voices",
    "wer_vocoder_only_validation": "the vocoder alone on the true mel, validation",
    "mel_l1_validation": "mel L1, validation",
    "mcd_validation": "mel cepstral distortion, validation",
    "stream_vs_offline_mel_max_abs_diff": "streamed vs offline mel, max abs difference",
}
_DECODER_TRAIN_ROWS = {
    "objective": "objective",
    "target_voice": "output voice",
    "voices": "voices",
    "parameters": "parameters",
    "steps": "optimizer steps",
    "train_utterances": "training utterances",
    "train_audio_minutes": "training audio (min)",
    "token_loss_weight": "token-consistency loss weight",
    "total_seconds": "wall time (s)",
}


def _table(metrics: Mapping[str, Any], rows: Mapping[str, str]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, label in rows.items():
        if key in metrics and metrics[key] is not None:
            value = metrics[key]
            if isinstance(value, float):
                value = f"{value:.2e}" if 0 < abs(value) < 1e-3 else round(value, 4)
            lines.append(f"| {label} | {value} |")
    return "\n".join(lines)


def _card(tags: list[str], intro: str, usage: str, metrics: Mapping, evaluation: Mapping, training: Mapping,
          plots: list[str], note: str = "") -> str:  # fmt: skip
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", tags=["speechtext", "glm-4-voice", *tags])
    images = "\n".join(f"![{p.rsplit('.', 1)[0].replace('_', ' ')}]({p})" for p in plots)
    body = (
        f"{intro.strip()}\n\n## Use\n\n```python\n{usage.strip()}\n```\n\n## Evaluation\n\n"
        f"{_table(metrics, evaluation)}\n\n{note}\n\n## Training\n\n{_table(metrics, training)}\n\n{images}\n"
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def text_to_token_card(metrics: Mapping[str, Any], model_type: str, data: str | None = None) -> str:
    """The README.md of a text-to-token model folder, from its training `metrics`."""
    intro = f"""
# Text-to-token model (speechtext)

A plain `{model_type}` causal LM that reads text and writes the discrete speech tokens a speech tokenizer would
produce for that text spoken aloud ({metrics.get("codebook_size", "?")}-entry codebook, `<|audio_0|>`...). No
audio is synthesized: this model turns text spans into speech spans when building synthetic interleaved
speech-text data (GLM-4-Voice recipe). The loss covered the speech side only. {f"Trained on `{data}`." if data else ""}

Plain transformers works with `trust_remote_code=True`: the folder ships the speech-only rule as
`custom_generate/generate.py` (transformers' Hub custom generation), so `model.generate()` writes only speech tokens
and then `<|end_of_audio|>`. Without `trust_remote_code=True` that rule is not loaded and the model may write text
tokens. The prompt is `text<|begin_of_audio|>` (left-padded in a batch); `generation_config.json` holds the
sampling settings the synthesizer uses, `eos_token_id` = `<|end_of_audio|>` and, with `tokenizer=` passed to
`generate()`, the per-text token budget (`max_tokens_per_char`, `min_token_budget`). What plain `generate()` does
not do: per-text seeded sampling (a text's tokens independent of its batch), continuous batching, runaway retries
and MBR decoding. `TextToTokenSynthesizer` does those; its settings are in `synthesis_config.json`.
"""
    usage = """
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("path/or/repo", trust_remote_code=True)  # + custom_generate/generate.py
tokenizer = AutoTokenizer.from_pretrained("path/or/repo", padding_side="left")
texts = ["john went to the kitchen", "where is mary"]
inputs = tokenizer([t + "<|begin_of_audio|>" for t in texts], return_tensors="pt", padding=True, add_special_tokens=False)
out = model.generate(**inputs, tokenizer=tokenizer)  # <|audio_i|> tokens, then <|end_of_audio|>
offset = model.generation_config.speech_token_offset
speech_ids = [[t - offset for t in row if offset <= t < offset + model.generation_config.speech_codebook_size]
              for row in out[:, inputs["input_ids"].shape[1]:].tolist()]

# or, with the speechtext package (seeded per text, continuous batching, retries, MBR):
from modeling_speechtext.generation.text_to_token import TextToTokenSynthesizer

synth = TextToTokenSynthesizer.from_pretrained("path/or/repo")
speech_ids = synth.synthesize(texts, seed=0)  # one list of codebook ids per text
"""
    note = "The judge is the speech tokenizer's own ASR head, so the real-token WER is the reference point."
    tags = ["text-to-speech-tokens", model_type]
    return _card(tags, intro, usage, metrics, _T2T_EVAL_ROWS, _T2T_TRAIN_ROWS, ["loss_curve.png"], note)


def speech_tokenizer_card(metrics: Mapping[str, Any]) -> str:
    """The README.md of a speech tokenizer folder (`recipes/train_speech_tokenizer.py`)."""
    intro = f"""
# Speech tokenizer (speechtext)

A Whisper-style encoder with one vector-quantized codebook ({metrics.get("codebook_size", "?")} codes) in the
middle, average-pooled to {metrics.get("frame_rate", "?")} tokens per second and trained *supervised* with an ASR
loss (GLM-4-Voice recipe): audio -> discrete speech tokens that keep what is said. The layers after the
quantizer and the ASR head stay in the model, so the tokens can be read back as text (the judge of the
text-to-token model and the speech decoder).
"""
    usage = """
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("path/or/repo", trust_remote_code=True)
features = AutoFeatureExtractor.from_pretrained("path/or/repo", trust_remote_code=True)
# or: `speechtext transcribe` / modeling_speechtext.generation.speech_tokenization.load_speech_tokenizer
"""
    return _card(
        ["speech-tokenizer", "audio"], intro, usage, metrics, _TOKENIZER_EVAL_ROWS, _TOKENIZER_TRAIN_ROWS,
        ["loss_curves.png", "codebook_usage.png"],
    )  # fmt: skip


def speech_decoder_card(metrics: Mapping[str, Any]) -> str:
    """The README.md of a speech decoder folder (`recipes/train_speech_decoder.py`)."""
    intro = f"""
# Speech decoder (speechtext)

Speech tokens -> a token encoder -> log-mel (objective `{metrics.get("objective", "?")}`: conditional flow matching
with an Euler sampler, or a plain L1 regression) -> waveform (Griffin-Lim by default; `set_vocoder` swaps in a
neural one), streamed in blocks: the first audio after 10 tokens (GLM-4-Voice recipe). The output voice is {metrics.get("target_voice") or "chosen per call among the training voices"}.
"""
    usage = """
from transformers import AutoFeatureExtractor, AutoModel

decoder = AutoModel.from_pretrained("path/or/repo", trust_remote_code=True)
mel_targets = AutoFeatureExtractor.from_pretrained("path/or/repo", trust_remote_code=True)  # audio -> log-mel
waveform = decoder.decode(token_ids)  # a list of speech token ids -> 1-D audio at config.sampling_rate
for chunk in decoder.decode_stream(iter(token_ids)):  # audio chunks while the tokens arrive
    play(chunk)
"""
    note = "The WERs are the speech tokenizer's ASR on re-tokenized audio; see `mels.png` for decoded vs true mels."
    return _card(
        ["speech-decoder", "flow-matching", "audio"], intro, usage, metrics, _DECODER_EVAL_ROWS, _DECODER_TRAIN_ROWS,
        ["mels.png"], note,
    )  # fmt: skip


__all__ = ["speech_decoder_card", "speech_tokenizer_card", "text_to_token_card"]

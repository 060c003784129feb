"""A tiny speech-text model assembled from parts: the test speech tokenizer (16 codes), the test BPE with 16 speech
tokens and the chat roles, and a 2-layer Llama over it."""

import numpy as np
import torch
from lm_fixtures import speech_text_tokenizer, tiny_llama

from modeling_speechtext.data.dialogue import CHAT_TEMPLATE, ROLE_TOKENS
from modeling_speechtext.generation.speech_tokenization import build_feature_extractor
from modeling_speechtext.models.speech_text.modeling_speech_text import SpeechTextForConditionalGeneration
from modeling_speechtext.models.speech_text.processing_speech_text import SpeechTextProcessor
from modeling_speechtext.models.speech_tokenizer.configuration_speech_tokenizer import SpeechTokenizerConfig
from modeling_speechtext.models.speech_tokenizer.modeling_speech_tokenizer import SpeechTokenizerModel

CODEBOOK = 16
TOKENIZER = dict(num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                 quantize_position=1, codebook_size=CODEBOOK, codebook_dim=8, max_source_positions=400)  # fmt: skip


def chat_parts(seed: int = 0, text_chunk: int = 3, speech_chunk: int = 4):
    """(speech tokenizer, LM, text tokenizer, feature extractor), all fresh and tiny."""
    tok, _ = speech_text_tokenizer(CODEBOOK)
    tok.add_tokens(list(ROLE_TOKENS), special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    st = SpeechTokenizerModel(SpeechTokenizerConfig(**TOKENIZER, asr_vocab_size=len(tok))).eval()
    st.set_asr_vocabulary(tok)
    lm = tiny_llama(tok, seed=seed)
    lm.config.max_position_embeddings = 512
    lm.config.speech_text = {"text_chunk": text_chunk, "speech_chunk": speech_chunk}
    return st, lm, tok, build_feature_extractor(st.config)


def tiny_speech_text(seed: int = 0, **layout):
    """(SpeechTextForConditionalGeneration, SpeechTextProcessor)."""
    st, lm, tok, fe = chat_parts(seed, **layout)
    model = SpeechTextForConditionalGeneration.from_parts(st, lm, tok)
    return model, SpeechTextProcessor(feature_extractor=fe, tokenizer=tok)


def clip(seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a tone in noise, in 4 Hz syllable-like bursts (steady sound is refused)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    voiced = 0.3 * np.sin(2 * np.pi * (200 + 300 * rng.random()) * t) + 0.05 * rng.standard_normal(t.size)
    bursts = 0.55 + 0.45 * np.sign(np.sin(2 * np.pi * 4 * t + 0.3))
    return (voiced * bursts).astype(np.float32)

"""Spoken bAbI evaluation data (issue 20): test stories and questions of chosen tasks, synthesized by the offline TTS
engines in voices the speech tokenizer was trained on and in held-out voices, then tokenized. Never trained on.

Rooms: `config` (what to build), `build` (choose, plan, synthesize, write manifests, tokenize), `stage` (pipeline).
The manifests are the format `speechtext eval --spoken_qa` reads (modeling_speechtext/evaluation/spoken_qa_data.py).
"""

from .build import build_spoken_qa, choose_questions, story_id
from .config import VOICE_SETS, SpokenQAConfig
from .stage import default_voices, run_stage

__all__ = ["VOICE_SETS", "SpokenQAConfig", "build_spoken_qa", "choose_questions", "default_voices", "run_stage",
           "story_id"]

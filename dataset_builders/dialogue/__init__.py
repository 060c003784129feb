"""Spoken dialogue data for the SFT stage (issue 22): bAbI stories told and asked by TTS voices (speech tokens of
real synthesized audio, or text), answered by the assistant in a short sentence, as text and as speech tokens.

Rooms: `config` (what to build), `build` (plan, speak, tokenize, write Parquet + card), `stage` (pipeline).
"""

from .build import answer_sentence, build_dialogues, plan_dialogues
from .config import DialogueConfig
from .stage import default_voices, run_stage

__all__ = ["DialogueConfig", "answer_sentence", "build_dialogues", "default_voices", "plan_dialogues", "run_stage"]

"""Speech decoder: speech tokens -> mel (conditional flow matching) -> waveform, streamable.

With `condition: tokenizer_states` the decoder carries a copy of the speech tokenizer's post-quantizer layers, so
its saved folder needs two of the tokenizer's code files: `configuration_speech_tokenizer.py` and
`layers_speech_tokenizer.py` here are symlinks to the sibling unit `models/speech_tokenizer/` (one implementation;
`save_pretrained` copies the files they point to). Inside this package those names are aliased to that unit's
modules (the same pattern and reason as `models/speech_text/__init__.py`).
"""

import importlib
import sys

for _name in ("configuration_speech_tokenizer", "layers_speech_tokenizer"):
    # importlib, not an import statement: transformers' remote-code scan must not see a path outside the folder
    sys.modules.setdefault(f"{__name__}.{_name}", importlib.import_module(f"..speech_tokenizer.{_name}", __name__))

__all__: list[str] = []

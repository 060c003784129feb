"""Speech-text model: the speech tokenizer's encoder + a stock causal LM, the streaming-thoughts layout, the
logits processor enforcing it, and the processor (feature extractor + text tokenizer + chat template).

The model holds the speech tokenizer, so its saved folder must carry the speech tokenizer's code as remote code:
the `*_speech_tokenizer.py` files here are symlinks to the sibling unit `models/speech_tokenizer/` (one
implementation; `save_pretrained` copies the files they point to). Inside this package the names below are
aliased to that unit's modules, so a `SpeechTokenizerModel` is one class whichever path imported it; in a saved
folder this `__init__` does not exist and the copied files are the modules.
"""

import importlib
import sys

_SPEECH_TOKENIZER_MODULES = (
    "asr_speech_tokenizer",
    "configuration_speech_tokenizer",
    "convert_whisper_to_speech_tokenizer",
    "feature_extraction_speech_tokenizer",
    "layers_speech_tokenizer",
    "modeling_speech_tokenizer",
    "quantization_speech_tokenizer",
    "streaming_speech_tokenizer",
    "tokenization_speech_tokenizer",
)
for _name in _SPEECH_TOKENIZER_MODULES:
    # importlib, not an import statement: transformers' remote-code scan must not see a path outside the folder
    sys.modules.setdefault(f"{__name__}.{_name}", importlib.import_module(f"..speech_tokenizer.{_name}", __name__))

__all__: list[str] = []

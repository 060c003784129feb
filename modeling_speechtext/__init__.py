"""speechtext: speech-text pretraining with synthetic interleaved data, Hugging Face-native.

Kept import-light on purpose: the CLI must start fast, so heavy modules (torch, transformers) are imported
by the submodules that need them, not here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Self-contained remote-code units, one folder per model.

A folder here imports only its siblings, torch and transformers: `save_pretrained` copies exactly these files
next to the weights, so a saved model loads with `trust_remote_code=True` where this package is not installed.
"""

__all__: list[str] = []

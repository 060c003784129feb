"""Text-to-token model: a stock causal LM; what is its own is the speech-only generation rule shipped with it.

`custom_generate/generate.py` is copied next to the weights (transformers' Hub custom generation), so
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).generate(...)` writes speech tokens only,
also where this package is not installed. Like every model folder, it imports only torch and transformers.
"""

__all__: list[str] = []

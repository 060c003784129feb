"""Start a speech tokenizer from a pretrained Whisper encoder, as the paper starts from whisper-large-v3.

A weight conversion, not part of the network: it maps Whisper's parameter names onto ours (the layers are the
same `WhisperEncoderLayer`s, split at the quantizer) and refuses anything that does not fit, by name and shape.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def load_whisper_encoder_weights(model, whisper_encoder_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a Whisper encoder's weights into `model` (a `SpeechTokenizerModel`) in place.

    `whisper_encoder_state` is `WhisperModel.from_pretrained(...).get_encoder().state_dict()`. Its layers
    `0..quantize_position-1` go before the quantizer, the rest after it; conv stem, sinusoid positions and the
    final layer norm map one to one. Returns the names of our parameters it did not cover (quantizer, heads).
    """
    n_pre = model.config.quantize_position
    mapped = {}
    for key, value in whisper_encoder_state.items():
        if key.startswith(("conv1.", "conv2.")):
            mapped["conv_stem." + key] = value
        elif key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            index = int(index)
            mapped[f"layers.{index}.{rest}" if index < n_pre else f"post_layers.{index - n_pre}.{rest}"] = value
        elif key.startswith(("layer_norm.", "embed_positions.")):
            mapped[key] = value
    own = model.state_dict()
    for key, value in mapped.items():
        if key not in own:
            raise ValueError(f"Whisper weight {key!r} has no place in this model (more layers than encoder_layers?)")
        if tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"Whisper weight {key!r} has shape {tuple(value.shape)}, ours {tuple(own[key].shape)}")
        own[key].copy_(value)
    return sorted(k for k, p in model.named_parameters() if k not in mapped)


__all__ = ["load_whisper_encoder_weights"]

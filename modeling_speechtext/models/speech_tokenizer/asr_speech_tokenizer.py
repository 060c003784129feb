"""The ASR side of the speech tokenizer: CTC losses, greedy CTC decoding, transcription and the vocabulary file.

Why a mixin of its own: the ASR head exists only to make the codes carry text content (it is dropped when the
tokenizer is used as a tokenizer), and its vocabulary (~151k byte-level pieces at the paper's size) travels in
`asr_vocab.json`, not in `config.json`. Everything that reads or writes that file, or turns CTC outputs into
text, lives here; `SpeechTokenizerModel` keeps the encoder, the quantizer and the heads' modules.

The mixin expects the model's `config`, `quantizer`, `encode`, `_decode_post_quantizer` and the
`asr_vocabulary` attribute; it comes first in `SpeechTokenizerModel`'s bases so that its `save_pretrained` /
`from_pretrained` wrap `PreTrainedModel`'s.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from transformers.utils import logging

from .tokenization_speech_tokenizer import ASR_VOCAB_NAME, SpeechTokenizerAsrVocabulary

logger = logging.get_logger(__name__)


class SpeechTokenizerAsrMixin:
    """CTC training loss, best-path decoding, `transcribe_tokens` / `transcribe` and `asr_vocab.json` IO."""

    @property
    def blank_id(self) -> int:
        return self.config.asr_vocab_size

    def _ctc_loss(self, logits, logit_lengths, labels, vocab_size: int | None = None, name: str = "labels"):
        vocab_size = self.config.asr_vocab_size if vocab_size is None else vocab_size
        if labels.dim() != 2 or labels.shape[0] != logits.shape[0]:
            raise ValueError(f"{name} must be [batch, length] with batch {logits.shape[0]}, got {tuple(labels.shape)}")
        label_mask = labels >= 0
        if (labels[label_mask] >= vocab_size).any():
            head = "asr_vocab_size" if name == "labels" else "the auxiliary vocabulary size"
            raise ValueError(f"{name} contain ids >= {vocab_size} ({head})")
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        return F.ctc_loss(
            log_probs,
            labels[label_mask],
            logit_lengths,
            label_mask.sum(-1),
            blank=vocab_size,
            reduction="mean",
            zero_infinity=True,
        )

    def _padded_ids(self, token_ids: list[list[int]]) -> tuple[torch.LongTensor, torch.Tensor]:
        if isinstance(token_ids, torch.Tensor) or not isinstance(token_ids, (list, tuple)):
            raise ValueError("token_ids must be a list of lists of ints (one list per utterance)")
        rows = [list(map(int, row)) for row in token_ids]
        for i, row in enumerate(rows):
            bad = [t for t in row if not 0 <= t < self.config.codebook_size]
            if bad:
                raise ValueError(f"token_ids[{i}] has ids outside 0..{self.config.codebook_size - 1}: {bad[:5]}")
        longest = max((len(r) for r in rows), default=0)
        ids = torch.zeros(len(rows), max(longest, 1), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        return ids, torch.arange(ids.shape[1], device=self.device) < lengths[:, None]

    @torch.no_grad()
    def ctc_greedy_ids(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best path: argmax per step, merge repeats, drop blanks."""
        best = logits.argmax(-1).tolist()
        out = []
        for row, n in zip(best, lengths.tolist()):
            ids, prev = [], None
            for t in row[:n]:
                if t != prev and t != self.blank_id:
                    ids.append(t)
                prev = t
            out.append(ids)
        return out

    def decode_asr_ids(self, ids: list[int]) -> str:
        """Subword ids -> text with the model's ASR vocabulary (`asr_vocab.json`, byte-level BPE pieces)."""
        return self._vocabulary().decode(ids)

    def _vocabulary(self) -> SpeechTokenizerAsrVocabulary:
        if self.asr_vocabulary is None:
            where = f" in {self.name_or_path}" if self.name_or_path else ""
            raise ValueError(
                f"this speech tokenizer has no ASR vocabulary ({ASR_VOCAB_NAME} not found{where}); set it with "
                "model.set_asr_vocabulary(tokenizer), the BPE tokenizer its CTC head was trained with"
            )
        return self.asr_vocabulary

    @torch.no_grad()
    def transcribe_tokens(self, token_ids: list[list[int]]) -> list[str]:
        """Speech token ids (as from `encode`) -> text, through the layers after the quantizer and the CTC head."""
        vocabulary = self._vocabulary()
        if len(token_ids) == 0:
            return []
        ids, valid = self._padded_ids(token_ids)
        logits, lengths = self._decode_post_quantizer(self.quantizer.embed(ids).to(self.dtype), valid)
        return vocabulary.batch_decode(self.ctc_greedy_ids(logits, lengths))

    @torch.no_grad()
    def transcribe(
        self, input_features: torch.FloatTensor, attention_mask: torch.LongTensor | None = None
    ) -> list[str]:
        """Features -> text through the quantizer (what the tokens say, exactly as `transcribe_tokens`)."""
        ids, lengths = self.encode(input_features, attention_mask)
        return self.transcribe_tokens([row[:n].tolist() for row, n in zip(ids, lengths)])

    def set_asr_vocabulary(self, tokenizer) -> None:
        """Give the model the pieces of the ASR head's (byte-level BPE) tokenizer, so a saved folder transcribes
        standalone: `save_pretrained` writes them to `asr_vocab.json`. Also takes a `SpeechTokenizerAsrVocabulary`."""
        vocabulary = (
            tokenizer
            if isinstance(tokenizer, SpeechTokenizerAsrVocabulary)
            else SpeechTokenizerAsrVocabulary.from_tokenizer(tokenizer)
        )
        if len(vocabulary) != self.config.asr_vocab_size:
            raise ValueError(
                f"tokenizer has {len(vocabulary)} tokens but asr_vocab_size is {self.config.asr_vocab_size}"
            )
        self.asr_vocabulary = vocabulary

    # ----------------------------------------------------------------- the vocabulary travels with the weights
    def save_asr_vocabulary(self, save_directory, is_main_process: bool = True) -> None:
        """Write `asr_vocab.json` into a model folder (or remove a stale one). Also used by models that hold this
        one (the speech-text model), so the file is written in one place."""
        if is_main_process and not os.path.isfile(save_directory):
            os.makedirs(save_directory, exist_ok=True)
            stale = os.path.join(save_directory, ASR_VOCAB_NAME)
            if self.asr_vocabulary is not None:
                self.asr_vocabulary.save_pretrained(save_directory)
            elif os.path.isfile(stale):  # another model's vocabulary must not be picked up with these weights
                os.remove(stale)

    def load_asr_vocabulary(self, pretrained_model_name_or_path, **kwargs) -> None:
        """Read a folder's `asr_vocab.json` (checked against `asr_vocab_size`); `kwargs`: from_pretrained's."""
        hub_keys = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")
        hub_kwargs = {k: kwargs[k] for k in hub_keys if kwargs.get(k) is not None}
        vocabulary = SpeechTokenizerAsrVocabulary.from_pretrained(
            pretrained_model_name_or_path, expected_size=self.config.asr_vocab_size, **hub_kwargs
        )
        if vocabulary is not None:
            self.asr_vocabulary = vocabulary
        elif self.asr_vocabulary is None:
            logger.warning(
                "%s has no %s: the model encodes, but transcribe_tokens needs set_asr_vocabulary(tokenizer)",
                pretrained_model_name_or_path, ASR_VOCAB_NAME,
            )  # fmt: skip

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` + `asr_vocab.json` (written first, so `push_to_hub=True` uploads it)."""
        self.save_asr_vocabulary(save_directory, kwargs.get("is_main_process", True))
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` + the folder's `asr_vocab.json` (checked against `asr_vocab_size`)."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        model.load_asr_vocabulary(pretrained_model_name_or_path, **kwargs)
        return loaded


__all__ = ["SpeechTokenizerAsrMixin"]

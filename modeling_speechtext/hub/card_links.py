"""Cross-links between the repositories `speechtext publish` writes: each card names the others and its lineage.

Why: the recipes write each stage's card alone, in a run folder, where the other stages are sibling folders and
the usage snippets say "path/or/repo". Once published, a reader of one repo must find the rest (the decoder that
voices the chat model's speech, the dataset a model was trained on), and the Hub itself links repos through the
card metadata: `base_model` (the model tree) and `datasets` on model cards, `models` / `datasets` on a Space's card.
So publishing rewrites every card once: the metadata for the lineage below, the repo id in the usage snippets, and a
"speechtext repositories" section with a line per published repo.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# name -> (repo type, what it is); the order is the recipe's
ROLES: dict[str, tuple[str, str]] = {
    "speech-tokenizer": ("model", "speech tokenizer: audio -> speech tokens at 12.5 Hz (+ its ASR head)"),
    "speech-decoder": ("model", "speech decoder: speech tokens -> audio, streamed"),
    "text-to-token": ("model", "text-to-token model: text -> speech tokens (makes the interleaved data)"),
    "base-lm": ("model", "base text LM that pretraining starts from"),
    "lm": ("model", "pretrained speech-text LM"),
    "chat-lm": ("model", "spoken-dialogue LM (SFT, streaming thoughts), a stock causal LM"),
    "chat": ("model", "speech tokenizer + chat LM as one model, with its processor"),
    "speech-tokens": ("dataset", "speech corpus as speech tokens (ASR/TTS and speech-only data)"),
    "interleaved": ("dataset", "interleaved speech-text documents (synthetic, from text)"),
    "dialogue": ("dataset", "spoken dialogues for SFT"),
}
# name -> (base models, training datasets), each kept only when that repo is published too
LINEAGE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "speech-decoder": ((), ("speech-tokens",)),
    "text-to-token": ((), ("speech-tokens",)),
    "lm": (("base-lm",), ("interleaved", "speech-tokens")),
    "chat-lm": (("lm",), ("dialogue",)),
    "chat": (("chat-lm", "speech-tokenizer"), ("dialogue",)),
}
FINETUNED = (
    "lm",
    "chat-lm",
)  # `base_model_relation: finetune`; the chat composite holds its bases' weights as they are
SPACE_USES = (("chat", "speech-decoder", "text-to-token"), ("dialogue",))
# how the recipes' cards name the model in their usage snippets
PLACEHOLDERS = ('"path/or/repo"', '"PATH"')
SECTION = "## speechtext repositories"


def _repo_url(repo_id: str, repo_type: str) -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"https://huggingface.co/{prefix}{repo_id}"


def links_section(namespace: str, published: Mapping[str, str], this: str) -> str:
    """Markdown: one line per published repo (`published`: name -> repo type), this one marked."""
    lines = [SECTION, "", "Every stage of one speechtext run (GLM-4-Voice recipe, arXiv:2411.17607):", ""]
    for name, (kind, role) in ROLES.items():
        if published.get(name) == kind:
            repo = f"{namespace}/speechtext-{name}"
            mark = " (this repo)" if name == this else ""
            lines.append(f"- [{repo}]({_repo_url(repo, kind)}){mark}: {role}")
    if "space" in published:
        repo = f"{namespace}/speechtext-chat"
        lines.append(f"- [{repo}]({_repo_url(repo, 'space')}) (Space){' (this repo)' if this == 'space' else ''}: "
                     "talk to the chat model in the browser")  # fmt: skip
    return "\n".join(lines) + "\n"


def link_card(folder: str | Path, name: str, namespace: str, published: Mapping[str, str],
              upstream_base: str | None = None) -> None:  # fmt: skip
    """Rewrite `folder/README.md` with the lineage metadata, the repo id in snippets and the links section.

    `name` is a key of ROLES or "space"; `published` maps every published name to its repo type; `upstream_base`:
    the Hub LM the pretrained LM grew from when the run's base LM stage only referenced one (not published). The file is
    replaced, not written through: the published folders hard-link the run's files, and the run's own card must
    stay as the recipe wrote it.
    """
    from huggingface_hub import DatasetCard, ModelCard, SpaceCard

    path = Path(folder) / "README.md"
    kind = "space" if name == "space" else ROLES[name][0]
    card_class = {"model": ModelCard, "dataset": DatasetCard, "space": SpaceCard}[kind]
    card = card_class(path.read_text()) if path.is_file() else card_class("---\n---\n")

    def ids(names, want_kind):
        return [f"{namespace}/speechtext-{n}" for n in names if published.get(n) == want_kind]

    if name == "space":
        models, data = ids(SPACE_USES[0], "model"), ids(SPACE_USES[1], "dataset")
        if models:
            card.data.models = models
        if data:
            card.data.datasets = data
    elif name in LINEAGE:
        bases, data = ids(LINEAGE[name][0], "model"), ids(LINEAGE[name][1], "dataset")
        if name == "lm" and not bases and upstream_base:
            bases = [upstream_base]
        if bases:
            card.data.base_model = bases[0] if len(bases) == 1 else bases
            if name in FINETUNED:
                card.data.base_model_relation = "finetune"
        if data:
            card.data.datasets = data
    text = card.text
    if name != "space":
        for placeholder in PLACEHOLDERS:
            text = text.replace(placeholder, f'"{namespace}/speechtext-{name}"')
    text = text.split(SECTION)[0].rstrip() + "\n\n" + links_section(namespace, published, name)
    card = card_class(f"---\n{card.data.to_yaml()}\n---\n{text}")  # re-parsed: what is written is what the Hub reads
    path.unlink(missing_ok=True)  # a hard link to the run's card: replace it, never write through it
    card.save(str(path))


__all__ = ["LINEAGE", "ROLES", "link_card", "links_section"]

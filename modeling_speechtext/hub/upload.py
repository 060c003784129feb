"""Upload a finished stage folder to the Hub: the one upload path of the recipes and builders.

Why the recipes do not leave this to `Trainer(push_to_hub=True)`: the Trainer pushes at save time, before the
recipe has written its evaluation, `metrics.json` and model card, and its own `push_to_hub()` replaces that card
with a generic one. So the recipes take `push_to_hub` / `hub_model_id` / `hub_private_repo` / `hub_token` from
the training arguments, turn the Trainer's push off, and upload the final folder here once it is complete.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# never uploaded: resumable training state and half-written files
DEFAULT_IGNORE = ("checkpoint-*", "checkpoint-*/**", "checkpoints/**", "*.tmp", "cache/**", "stage.json")


def upload_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = False,
    token: str | None = None,
    allow_patterns: list[str] | None = None,
    commit_message: str | None = None,
) -> str:
    """Create `repo_id` if needed and upload `folder` in one commit (huggingface_hub skips unchanged files);
    returns the commit URL."""
    from huggingface_hub import HfApi

    if not repo_id or "/" not in repo_id:
        raise ValueError(f"hub repo id {repo_id!r}: expected 'namespace/name'")
    api = HfApi(token=token)
    # a Space needs its SDK at creation; ours is a Gradio app (spaces/README.md says the same in its front matter)
    sdk = {"space_sdk": "gradio"} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **sdk)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type=repo_type,
        folder_path=str(Path(folder)),
        allow_patterns=allow_patterns,
        ignore_patterns=list(DEFAULT_IGNORE),
        commit_message=commit_message or f"Upload {Path(folder).name} (speechtext)",
    )
    url = str(getattr(info, "commit_url", info))
    logger.info("uploaded %s -> %s (%s)", folder, repo_id, url)
    return url


def take_push_settings(training_args) -> dict | None:
    """Read the `TrainingArguments` push settings and switch the Trainer's own push off (see module docstring).

    Returns the upload settings for `upload_folder_to_hub`, or None when nothing is to be pushed.
    """
    if not getattr(training_args, "push_to_hub", False):
        return None
    repo_id = training_args.hub_model_id
    if not repo_id:
        raise ValueError("push_to_hub needs hub_model_id ('namespace/name'): the repo the final folder goes to")
    settings = {"repo_id": repo_id, "private": bool(training_args.hub_private_repo), "token": training_args.hub_token}
    training_args.push_to_hub = False
    return settings


__all__ = ["DEFAULT_IGNORE", "upload_folder_to_hub", "take_push_settings"]

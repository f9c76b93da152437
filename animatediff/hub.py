"""Where a model comes from: a local path, or a Hugging Face Hub reference fetched into the local cache."""

from __future__ import annotations

import os
from pathlib import Path

from animatediff.errors import InputNotFound


def resolve_path(path_or_id: str | os.PathLike, kind: str = "file") -> Path:
    """A local path as is; else a hub reference: `owner/repo` (a folder) or `owner/repo/file.ext` (one file).

    Raises InputNotFound, saying what was tried, when neither works (offline, typo, no access).
    """
    path = Path(path_or_id).expanduser()
    if path.exists():
        return path
    text = str(path_or_id)
    parts = text.split("/")
    looks_like_hub = len(parts) >= 2 and not text.startswith((".", "/", "~")) and all(parts)
    if not looks_like_hub:
        raise InputNotFound(f"{kind} not found: {text}")
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        repo_id = "/".join(parts[:2])
        if len(parts) > 2:
            return Path(hf_hub_download(repo_id, "/".join(parts[2:])))
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.bin"]))
    except Exception as err:  # noqa: BLE001 - any hub failure (offline, 404, auth) gets the same clear message
        raise InputNotFound(
            f"{kind} {text!r} is not a local path and could not be fetched from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None

"""Where a model comes from: a local path, or a Hugging Face Hub reference fetched into the local cache.

Only what can be a hub reference goes to the hub: `owner/name` (a repository; the name has no file extension)
or `owner/name/file.ext` (one file, perhaps in a subfolder of the repository) where `owner` is not a local
folder. Anything else that does not exist locally (`models/Motion_Module/mm.ckpt` beside a `models/` folder,
`./x`, `~/x`, `/x`, `owner/name.ckpt`) is not found at once, without a network call.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from animatediff.errors import InputNotFound

_HUB_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")  # an owner or repository name on the hub
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]*")  # `.ckpt`, `.safetensors`; not `.5-7B` of `Qwen2.5-7B`


def _has_extension(name: str) -> bool:
    return bool(_EXTENSION.fullmatch(Path(name).suffix))


def hub_reference(path_or_id: str | os.PathLike) -> tuple[str, str | None] | None:
    """(repository id, file in it or None for the whole repository) where the text can be a hub reference."""
    text = os.fspath(path_or_id)
    if text.startswith((".", "/", "~")) or "\\" in text:
        return None  # written as a local path
    parts = text.split("/")
    if len(parts) < 2 or not all(_HUB_NAME.fullmatch(p) for p in parts[:2]) or not all(parts):
        return None
    if len(parts) == 2:
        return None if _has_extension(parts[1]) else (text, None)
    if _has_extension(parts[-1]) and not Path(parts[0]).exists():
        return "/".join(parts[:2]), "/".join(parts[2:])
    return None


def check_reference(path_or_id: str | os.PathLike, kind: str = "file") -> None:
    """Without loading or fetching anything: an InputNotFound unless it exists locally or can be a hub reference."""
    if not Path(path_or_id).expanduser().exists() and hub_reference(path_or_id) is None:
        raise InputNotFound(f"{kind} not found: {os.fspath(path_or_id)}")


def resolve_path(path_or_id: str | os.PathLike, kind: str = "file") -> Path:
    """A local path as is; else a hub reference (see the module's docstring) fetched into the local cache.

    Raises InputNotFound: at once for a path that is neither; saying what was tried when the hub fails (offline,
    typo, no access).
    """
    path = Path(path_or_id).expanduser()
    if path.exists():
        return path
    check_reference(path_or_id, kind)
    repo_id, filename = hub_reference(path_or_id)
    text = os.fspath(path_or_id)
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if filename is not None:
            return Path(hf_hub_download(repo_id, filename))
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.bin"]))
    except Exception as err:  # noqa: BLE001 - any hub failure (offline, 404, auth) gets the same clear message
        raise InputNotFound(
            f"{kind} {text!r} is not a local path and could not be fetched from the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None

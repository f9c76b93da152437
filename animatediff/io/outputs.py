"""Checks, before any model loads, that an output can be written where the user asked.

Each failure is one InputError line naming the option (`--output`, `--output-dir`) and the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from animatediff.errors import InputError


def _unwritable(folder: Path) -> str | None:
    """Create `folder` (with its parents), write and remove a probe file in it; why that failed, or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        return f"{blocking} is a file, not a folder"
    except OSError as err:
        return f"cannot create the folder {folder} ({err.strerror})"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".animatediff-write-probe.")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        return f"cannot write in {folder} ({err.strerror})"
    return None


def check_output_folder(folder: str | os.PathLike, option: str) -> Path:
    """A folder outputs go in: created if missing, and written to once (a probe file, removed)."""
    folder = Path(folder)
    if reason := _unwritable(folder):
        raise InputError(f"{option} {folder}: {reason}")
    return folder


def check_output_path(
    path: str | os.PathLike,
    option: str,
    folder: bool = False,
    replaceable: Callable[[Path], bool] = lambda _: True,
) -> Path:
    """Where a file (or, with `folder`, a folder written whole) will go: its parent folder is created and must be
    writable, and the path must not hold a folder where a file goes, a file where a folder goes, or a folder that
    `replaceable` refuses to replace."""
    path = Path(path)
    if folder and (path.name in ("", "..") or path.resolve() == Path.cwd()):
        raise InputError(f"{option} {path}: name a new folder, not the current one or its parent")
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: a file is there, where the folder would go")
    if folder and path.is_dir() and not replaceable(path):
        raise InputError(f"{option} {path}: a folder holding other files is there; name a new or empty folder")
    if not folder and path.is_dir():
        raise InputError(f"{option} {path}: a folder is there, where the file would go")
    if reason := _unwritable(path.parent):
        raise InputError(f"{option} {path}: {reason}")
    return path

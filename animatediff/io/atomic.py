"""Writing a file or a folder under a temporary name beside it, then renaming it into place.

Readers never see half an output: an error or an interrupt (KeyboardInterrupt) while writing removes the
temporary and leaves what was at the path before untouched. Two writers of one path each write their own
temporary, and the last rename wins whole.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from animatediff.errors import InputError


def make_parent(path: Path) -> None:
    """Create the folder `path` goes in; a regular file where a folder is needed is an InputError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), path.parent)
        raise InputError(f"cannot write {path}: {blocking} is a file, not a folder") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_name(path: Path, suffix: str = ".tmp") -> dict:
    return {"dir": path.parent, "prefix": f".{path.name}.", "suffix": suffix}


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` produces the file at `tmp` (in `path`'s folder), which is then renamed to `path`."""
    path = Path(path)
    make_parent(path)
    if path.is_dir():
        raise InputError(f"cannot write the file {path}: a folder of that name is there")
    tmp = None
    try:
        fd, name = tempfile.mkstemp(**_temporary_name(path))
        tmp = Path(name)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; an output is as readable as any other
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def write_folder_atomic(
    path: str | os.PathLike, write: Callable[[Path], object], replaceable: Callable[[Path], bool] = lambda _: True
) -> Path:
    """`write(tmp)` fills a new folder `tmp` (beside `path`), which then replaces the folder at `path`.

    An existing folder is replaced whole, and only where `replaceable(folder)` allows it (an InputError otherwise,
    before anything is written): a folder of earlier outputs, not one holding a user's other files.
    """
    path = Path(path)
    if path.name in ("", "..") or path.resolve() == Path.cwd():
        raise InputError(f"cannot replace the folder {path}: name a new folder to write in")
    make_parent(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"cannot write the folder {path}: a file of that name is there")
    if path.is_dir() and not replaceable(path):
        raise InputError(f"{path} is a folder holding other files; it is replaced only when it holds earlier outputs")
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(**_temporary_name(path)))
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes folders private
        _move_into_place(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the folder `tmp` to `path`; a folder already there is moved aside first and removed after."""
    for _ in range(5):  # another writer may swap its own folder in between our renames
        try:
            os.replace(tmp, path)  # onto nothing, or onto an empty folder
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        aside = Path(tempfile.mkdtemp(**_temporary_name(path, ".old")))
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            aside.rmdir()
            continue
        try:
            os.replace(tmp, path)
        except BaseException:
            try:
                os.replace(aside, path)  # put the earlier folder back
            except OSError:
                shutil.rmtree(aside, ignore_errors=True)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, f"{path} kept changing while it was being replaced")

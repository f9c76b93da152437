"""A folder of shards and its shards.json index: finding the shards to read, and writing them."""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from animatediff.errors import InputError, InputNotFound
from animatediff.io.atomic import make_parent, write_atomic

logger = logging.getLogger("animatediff.data")

INDEX_FILE = "shards.json"
"""Written beside the shards by `prepare`: `{"shards": [{"name", "samples"}, ...], "samples"}`."""


def read_index(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(shard name, samples) of each shard the folder's shards.json lists, in its order."""
    index = Path(folder) / INDEX_FILE
    try:
        entries = [(str(s["name"]), int(s["samples"])) for s in json.loads(index.read_text())["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{index} is not a shard index ({type(err).__name__}: {err})") from None
    if not entries:
        raise InputError(f"{index} lists no shards")
    return entries


def _indexed_shards(folder: Path) -> list[Path]:
    shards = [folder / name for name, _ in read_index(folder)]
    absent = [s.name for s in shards if not s.is_file()]
    if absent:
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise InputNotFound(
            f"{len(absent)} shard(s) listed in {folder / INDEX_FILE} are missing: {', '.join(absent[:5])}{more}"
        )
    unlisted = sorted(p.name for p in set(folder.glob("*.tar")) - set(shards))
    if unlisted:
        logger.warning(
            "ignoring %d .tar file(s) in %s that its %s does not list: %s",
            len(unlisted),
            folder,
            INDEX_FILE,
            ", ".join(unlisted[:5]),
        )
    return shards


def find_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Shard paths from a `.tar` file, a folder (the shards its shards.json lists, else every `.tar` in it), a glob
    pattern, or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        return [shard for item in spec for shard in find_shards(item)]
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        if (path / INDEX_FILE).is_file():
            return _indexed_shards(path)
        shards = sorted(path.glob("*.tar"))
        where = f"folder {path}"
    elif any(c in text for c in "*?["):
        shards = sorted(Path(p) for p in glob.glob(text))
        where = f"pattern {text}"
    elif path.is_file():
        shards, where = [path], str(path)
    else:
        raise InputNotFound(f"no shard file or folder at {path}")
    if not shards:
        raise InputError(f"no .tar shards in {where}")
    return shards


class ShardWriter:
    """Writes samples into numbered tar shards of at most `shard_size` samples, each shard atomically
    (`.tmp` then rename), and, once all are written, their shards.json index (atomically too). Left by an
    exception, it removes what it wrote and writes no index."""

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = 1000, prefix: str = "shard") -> None:
        if shard_size < 1:
            raise InputError(f"shard_size must be at least 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        make_parent(self.out_dir / INDEX_FILE)
        self.shard_size = shard_size
        self.prefix = prefix
        self.shards: list[dict] = []
        self._tar: tarfile.TarFile | None = None
        self._keys: set[str] = set()

    def _open_next(self) -> None:
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp = self.out_dir / (name + ".tmp")
        self._tar = tarfile.open(self._tmp, mode="w")
        self.shards.append({"name": name, "samples": 0})

    def _close_current(self) -> None:
        if self._tar is not None:
            self._tar.close()
            os.replace(self._tmp, self.out_dir / self.shards[-1]["name"])
            self._tar = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """One sample: `members` maps extensions ("mp4", "txt") to bytes; `key` must be new and dot-free."""
        if "." in key or "/" in key or key in self._keys:
            raise ValueError(f"shard key {key!r} must be unique and contain no '.' or '/'")
        self._keys.add(key)
        if self._tar is None or self.shards[-1]["samples"] >= self.shard_size:
            self._close_current()
            self._open_next()
        now = time.time()
        for extension, data in members.items():
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime = len(data), now
            self._tar.addfile(info, io.BytesIO(data))
        self.shards[-1]["samples"] += 1

    def close(self) -> list[Path]:
        """Finish the last shard and write the index (none when no sample was written); returns the shard paths."""
        self._close_current()
        if self.shards:
            index = {"shards": self.shards, "samples": sum(s["samples"] for s in self.shards)}
            write_atomic(self.out_dir / INDEX_FILE, lambda tmp: tmp.write_text(json.dumps(index, indent=1) + "\n"))
        return [self.out_dir / s["name"] for s in self.shards]

    def abort(self) -> None:
        """Remove the shards written so far and the unfinished one; no index is written."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            self._tmp.unlink(missing_ok=True)
        for shard in self.shards:
            (self.out_dir / shard["name"]).unlink(missing_ok=True)
        self.shards = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise

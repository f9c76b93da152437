"""Reading WebDataset-style tar shards: members grouped into samples by key, as a stream or by their byte offsets.

A shard is a plain tar whose members come in groups sharing a key: `<key>.mp4` (or another video ending) and
`<key>.txt` (the caption), as the `webdataset` package writes them. A tar that ends before its end-of-archive block
was cut short: it gives the samples before the cut, then raises `tarfile.ReadError`.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Iterator

from animatediff.data.video_reader import VideoReadError

COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")
"""How gzip, bzip2, xz and zstd files start."""


def shard_key(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member: the key is everything before the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


class _EndNotingTarInfo(tarfile.TarInfo):
    """Notes on the archive which header ended its member list: `tarfile` ends it quietly at an end-of-archive
    block (all zeros), but also where the file stops before or inside a header, or at a garbled one."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as err:
            tar.ended_by = err
            raise


def _files_of(tar: tarfile.TarFile, shard: str | os.PathLike) -> Iterator[tarfile.TarInfo]:
    """The regular-file members; a `tarfile.ReadError` where the archive ends other than at its end block."""
    for member in tar:
        if member.isfile():
            yield member
    ended_by = getattr(tar, "ended_by", None)
    if not isinstance(ended_by, tarfile.EOFHeaderError):
        raise tarfile.ReadError(f"{shard} is cut short: it ends without an end-of-archive block ({ended_by})")


def _groups(members: Iterator[tarfile.TarInfo], value: Callable[[tarfile.TarInfo], object]) -> Iterator[tuple]:
    """(key, {extension: value(member)}) per run of members sharing a key. Where the archive turns out cut short,
    the run read so far is given if the cut came after its last member (it may still lack members that were to
    follow), dropped if the cut is inside one; then the error is raised."""
    key, group = None, {}
    while True:
        try:
            member = next(members, None)
        except (tarfile.TarError, OSError):
            if group:
                yield key, group
            raise
        if member is None:
            break
        member_key, extension = shard_key(member.name)
        if group and member_key != key:
            yield key, group
            group = {}
        key = member_key
        group[extension] = value(member)
    if group:
        yield key, group


def iter_tar_samples(shard: str | os.PathLike) -> Iterator[dict[str, bytes]]:
    """Samples of one shard in order: {"__key__": key, "<extension>": bytes, ...} per group of members, read as a
    stream. A tar cut short yields the samples before the cut, then raises `tarfile.ReadError`."""
    with tarfile.open(shard, mode="r|*", tarinfo=_EndNotingTarInfo) as tar:
        for key, group in _groups(_files_of(tar, shard), lambda member: tar.extractfile(member).read()):
            yield {"__key__": key, **group}


def scan_tar_samples(shard: str | os.PathLike) -> Iterator[tuple[str, dict[str, tuple[int, int]]]]:
    """(key, {extension: (byte offset, size)}) per sample of one plain tar, reading only its headers. A tar cut
    short yields the samples before the cut, then raises `tarfile.ReadError`."""
    with open(shard, "rb") as handle:
        if handle.read(6).startswith(COMPRESSED):
            raise tarfile.ReadError(f"{shard} is compressed: shards are streamed from plain (uncompressed) tars")
    with tarfile.open(shard, mode="r:", tarinfo=_EndNotingTarInfo) as tar:
        length = os.fstat(tar.fileobj.fileno()).st_size

        def place(member: tarfile.TarInfo) -> tuple[int, int]:
            if member.offset_data + member.size > length:
                raise tarfile.ReadError(f"{shard} is cut short inside {member.name}")
            return member.offset_data, member.size

        yield from _groups(_files_of(tar, shard), place)


class MemberReader:
    """Reads members by offset, keeping the last few shard files open."""

    def __init__(self, keep_open: int = 4) -> None:
        self._files: OrderedDict[str, io.BufferedReader] = OrderedDict()
        self._keep_open = keep_open

    def read(self, shard: str, offset: int, size: int) -> bytes:
        try:
            handle = self._files.pop(shard, None) or open(shard, "rb")  # closed by close()
            self._files[shard] = handle
            while len(self._files) > self._keep_open:
                self._files.popitem(last=False)[1].close()
            handle.seek(offset)
            data = handle.read(size)
        except OSError as err:
            raise VideoReadError(f"cannot read the shard ({err})", "bad_shard", shard) from err
        if len(data) != size:
            raise VideoReadError("the shard ends inside this member", "bad_shard", shard)
        return data

    def close(self) -> None:
        while self._files:
            self._files.popitem()[1].close()

"""WebDataset-style tar shards: writing them, and streaming clips from them across workers and ranks.

A shard is a plain tar whose members come in groups sharing a key: `<key>.mp4` (or another video ending) and
`<key>.txt` (the caption), as the `webdataset` package writes them, so shards made by either tool read in both.
Reading is sequential (`tarfile` stream mode), which is what network file systems and object stores do best.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from animatediff.data.clips import ClipConfig, item_rng, load_clip
from animatediff.data.datasets import VIDEO_EXTENSIONS, SkipCounter
from animatediff.data.video_reader import VideoReadError
from animatediff.errors import InputError, InputNotFound

logger = logging.getLogger("animatediff.data")

INDEX_FILE = "shards.json"
"""Written beside the shards by `prepare`: shard names and sample counts."""


def find_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Shard paths from a `.tar` file, a folder of them, a glob pattern, or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        return [shard for item in spec for shard in find_shards(item)]
    text = str(spec)
    path = Path(text)
    if path.is_dir():
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


def shard_key(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member: the key is everything before the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def iter_tar_samples(shard: str | os.PathLike) -> Iterator[dict[str, bytes]]:
    """Samples of one shard in order: {"__key__": key, "<extension>": bytes, ...} per group of members."""
    sample: dict = {}
    with tarfile.open(shard, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, extension = shard_key(member.name)
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[extension] = tar.extractfile(member).read()
    if sample:
        yield sample


def _video_member(sample: dict) -> bytes | None:
    for extension in VIDEO_EXTENSIONS:
        if extension[1:] in sample:
            return sample[extension[1:]]
    return None


def _distributed_rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardDataset(IterableDataset):
    """Clips streamed from tar shards, split across distributed ranks and DataLoader workers without overlap.

    Each epoch shuffles the shard order (same order on every rank, from seed and epoch), then deals shards to
    the `world_size × num_workers` readers. With fewer shards than readers, each reader reads all shards (of its
    rank) and keeps every n-th sample instead: correct, but the I/O repeats, so make more shards than readers.
    Within a reader, samples pass a shuffle buffer of raw bytes before decoding.

    Ranks can receive different numbers of clips (shards differ in size, skips differ): distributed training
    should run a fixed number of steps over `repeat=True`, which moves to the next epoch by itself.

    `shuffle_buffer` samples (raw video bytes: about 2 MB each for WebVid originals, far less for shards prepared
    with `--resize`) are held per reader; `shuffle=False` reads shards and samples in order. `rank`/`world_size`
    default to torch.distributed's, else the RANK/WORLD_SIZE environment variables.

    Resume with `set_position(epoch, consumed, batch_size)`: the readers skip, without decoding, the samples
    that the rank's first `consumed` items since the start of `epoch` came from (with `repeat`, the count runs on
    across epochs). Exact while no worker has run dry and no bad video was skipped in that range.
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        clip: ClipConfig | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 64,
        rank: int | None = None,
        world_size: int | None = None,
        repeat: bool = False,
    ) -> None:
        self.shards = [str(s) for s in find_shards(shards)]
        if shuffle_buffer < 0:
            raise InputError(f"shuffle_buffer must be non-negative, got {shuffle_buffer}")
        self.clip = clip or ClipConfig()
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.rank, self.world_size = _distributed_rank_and_size(rank, world_size)
        self.repeat = repeat
        self.counter = SkipCounter()
        # [epoch, position epoch, consumed, batch size]; shared so persistent DataLoader workers see updates.
        self._state = torch.tensor([0, -1, 0, 1], dtype=torch.int64).share_memory_()

    @property
    def skipped(self) -> dict[str, int]:
        """Samples skipped so far, per reason, over all DataLoader workers of this process."""
        return self.counter.totals()

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        """Shard order, shuffle buffer and clip sampling all change with the epoch."""
        self._state[0] = epoch

    def set_position(self, epoch: int, consumed: int, batch_size: int = 1) -> None:
        """Start at `epoch` and skip the first `consumed` items this rank's DataLoader yielded from its start (a
        multiple of `batch_size`, the DataLoader's, since each worker builds whole batches). A later `set_epoch`
        to another epoch clears the skip."""
        if consumed < 0 or batch_size < 1 or consumed % batch_size:
            raise ValueError(f"consumed ({consumed}) must be a non-negative multiple of batch_size ({batch_size})")
        self._state.copy_(torch.tensor([epoch, epoch, consumed, batch_size]))

    def num_samples(self) -> int | None:
        """Samples in all shards, from the shards.json index `prepare` writes, or None without one."""
        counts = {}
        for folder in {Path(s).parent for s in self.shards}:
            index = folder / INDEX_FILE
            if index.is_file():
                counts.update({str(folder / s["name"]): s["samples"] for s in json.loads(index.read_text())["shards"]})
        if not all(s in counts for s in self.shards):
            return None
        return sum(counts[s] for s in self.shards)

    def _reader(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _raw_samples(self, epoch: int, reader: int, num_readers: int) -> Iterator[dict]:
        """Reader `reader`'s share of the raw samples of one epoch, in shuffled order, not yet decoded."""
        order = np.arange(len(self.shards))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        shards = [self.shards[i] for i in order]
        # Split by shard where there are enough shards, else by sample (rank level first, then worker level).
        keep = []  # (parts, part) filters applied to the running sample count
        for parts, part in ((self.world_size, self.rank), (num_readers, reader)):
            if len(shards) >= parts:
                shards = shards[part::parts]
            else:
                keep.append((parts, part))
        if keep and reader == 0 and self.rank == 0 and not getattr(self, "_warned", False):
            self._warned = True
            logger.warning(
                "%d shards for %d ranks × %d workers: every reader reads shards it mostly discards; "
                "write more, smaller shards",
                len(self.shards),
                self.world_size,
                num_readers,
            )
        stream = self._samples_of(shards)
        for parts, part in keep:
            stream = (s for i, s in enumerate(stream) if i % parts == part)
        yield from self._shuffled(stream, np.random.default_rng([self.seed, epoch, self.rank, reader]))

    def _samples_of(self, shards: list[str]) -> Iterator[dict]:
        for shard in shards:
            try:
                yield from iter_tar_samples(shard)
            except (tarfile.TarError, OSError, EOFError) as err:
                self.counter.add("bad_shard", f"{shard}: {err}")

    def _shuffled(self, stream: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
        if self.shuffle_buffer <= 1:
            yield from stream
            return
        buffer: list[dict] = []
        for sample in stream:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            pick = int(rng.integers(len(buffer)))
            yield buffer[pick]
            buffer[pick] = sample
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = self._reader()
        epoch, position_epoch, consumed, batch_size = self._state.tolist()
        reader, skip = worker, 0
        if position_epoch == epoch and consumed:
            # The DataLoader takes whole batches from its workers in turn, starting with worker 0: before the stop,
            # reader r made batches r, r + n, ...; after it, worker w must play the reader whose batch is next.
            batches = consumed // batch_size
            reader = (worker + batches) % num_workers
            skip = batch_size * max(0, -(-(batches - reader) // num_workers))
        while True:
            for sample in self._raw_samples(epoch, reader, num_workers):
                key = sample["__key__"]
                video, caption = _video_member(sample), sample.get("txt")
                if video is None or caption is None:
                    what = "video" if video is None else "caption"
                    self.counter.add("missing", f"sample {key} lacks a {what} member")
                    continue
                if skip:  # resuming: this sample was trained on before the stop; no need to decode it
                    skip -= 1
                    continue
                try:
                    yield load_clip(video, caption.decode("utf-8").strip(), self.clip, item_rng(self.seed, epoch, key))
                except VideoReadError as err:
                    self.counter.add(err.reason, f"sample {key}: {err}")
            if not self.repeat:
                return
            epoch += 1


class ShardWriter:
    """Writes samples into numbered tar shards of at most `shard_size` samples, each shard atomically
    (`.tmp` then rename), and a shards.json index at the end."""

    def __init__(self, out_dir: str | os.PathLike, shard_size: int = 1000, prefix: str = "shard") -> None:
        if shard_size < 1:
            raise InputError(f"shard_size must be at least 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
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
        """Finish the last shard and write the index; returns the shard paths."""
        self._close_current()
        index = {"shards": self.shards, "samples": sum(s["samples"] for s in self.shards)}
        (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
        return [self.out_dir / s["name"] for s in self.shards]

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # leave the unfinished shard as .tmp and no index: the run did not complete
            self._tar.close()

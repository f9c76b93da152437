"""Streaming clips from tar shards across ranks and DataLoader workers, in an order the worker count does not change.

The shards are found by `shard_index.find_shards` (a folder with a shards.json index reads exactly the shards it
lists) and read by `tar_members` (a tar cut short gives the samples before the cut and counts as a bad shard).
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from animatediff.data.clips import ClipConfig, item_rng, load_clip
from animatediff.data.datasets import VIDEO_EXTENSIONS, SkipCounter, unreadable_in_a_row
from animatediff.data.shard_index import INDEX_FILE, find_shards, read_index
from animatediff.data.tar_members import MemberReader, scan_tar_samples
from animatediff.data.video_reader import VideoReadError
from animatediff.errors import InputError

logger = logging.getLogger("animatediff.data")

SPARES = 8
"""Samples a rank's stream holds ahead of (unshuffled) and behind the one it gives out, as replacements."""


class _Sample(NamedTuple):
    shard: str
    key: str
    video: tuple[int, int]
    """(byte offset, size) of the video member in the shard."""
    caption: tuple[int, int]
    epoch: int


class _Window:
    """A rank's samples between reading and giving out: a shuffle buffer (or, unshuffled, a queue of `SPARES`)
    ahead, and the last `SPARES` given out behind. Every worker of the rank holds the same window at the same
    point of the stream, so the replacement of a bad sample is the same whichever worker decodes it."""

    def __init__(self, shuffle_buffer: int, rng: np.random.Generator | None) -> None:
        self.shuffled = rng is not None and shuffle_buffer > 1
        self.size = shuffle_buffer if self.shuffled else SPARES
        self.rng = rng
        self.ahead: list[_Sample] = []
        self.behind: deque[_Sample] = deque(maxlen=SPARES)

    def spares(self) -> list[_Sample]:
        """The samples a bad one may be replaced by, in an order every worker agrees on."""
        return self.ahead + list(self.behind)

    def run(self, samples: Iterator[_Sample]) -> Iterator[_Sample]:
        for sample in samples:
            if len(self.ahead) < self.size:
                self.ahead.append(sample)
                continue
            if self.shuffled:
                pick = int(self.rng.integers(len(self.ahead)))
                out, self.ahead[pick] = self.ahead[pick], sample
            else:
                out = self.ahead.pop(0)
                self.ahead.append(sample)
            yield out
            self.behind.append(out)
        if self.shuffled:
            self.rng.shuffle(self.ahead)
        while self.ahead:
            out = self.ahead.pop(0)
            yield out
            self.behind.append(out)


def _distributed_rank_and_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        return rank, world_size
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardDataset(IterableDataset):
    """Clips streamed from tar shards, split across distributed ranks without overlap, in an order that does not
    depend on the number of DataLoader workers.

    Each epoch shuffles the shard order (same order on every rank, from seed and epoch) and deals the shards to
    the ranks; with fewer shards than ranks, each rank takes every `world_size`-th sample instead. A rank's samples
    pass a shuffle buffer into one sequence, fixed by (seed, epoch, rank). Its items go out in batches of
    `batch_size` (the DataLoader's: set it here or with `set_position`), and the DataLoader takes batches from its
    workers in turn: every worker walks the whole sequence, reading only tar headers, and decodes the batches that
    are its turn, reading their members by offset. So the clips a rank sees, and their order, are the same with 0,
    1 or 8 workers, and a run may resume with another number of workers.

    A sample that gives no clip is replaced by a random spare of the window (see `_Window`), up to `max_retries`
    times in a row (an `InputError` after that); a sample that lacks its video or caption is left out, and a shard
    cut short ends where it was cut. Each is counted once in `skipped` (the worker that decodes a sample counts
    it, worker 0 counts what it finds reading headers), so the counts of a rank's workers, and of all ranks, add up.

    Ranks can receive different numbers of clips (shards differ in size): distributed training should run a fixed
    number of steps over `repeat=True`, which moves to the next epoch by itself.

    `shuffle_buffer` samples (their headers only) are held per worker; `shuffle=False` reads shards and samples in
    order. `rank`/`world_size` default to torch.distributed's, else the RANK/WORLD_SIZE environment variables.

    Resume with `set_position(epoch, consumed, batch_size)`: the workers walk past, without decoding, the first
    `consumed` items of the rank's sequence since the start of `epoch` (with `repeat`, the count runs on across
    epochs), and go on exactly where the stopped run was.
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
        batch_size: int = 1,
        max_retries: int = 20,
    ) -> None:
        self.shards = [str(s) for s in find_shards(shards)]
        if shuffle_buffer < 0:
            raise InputError(f"shuffle_buffer must be non-negative, got {shuffle_buffer}")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if max_retries < 0:
            raise InputError(f"max_retries must be non-negative, got {max_retries}")
        self.clip = clip or ClipConfig()
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.rank, self.world_size = _distributed_rank_and_size(rank, world_size)
        self.repeat = repeat
        self.max_retries = max_retries
        self.counter = SkipCounter()
        # [epoch, position epoch, consumed, batch size]; shared so persistent DataLoader workers see updates.
        self._state = torch.tensor([0, -1, 0, batch_size], dtype=torch.int64).share_memory_()

    @property
    def skipped(self) -> dict[str, int]:
        """Samples (and shards) skipped so far, per reason, over all DataLoader workers of this process."""
        return self.counter.totals()

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    @property
    def batch_size(self) -> int:
        return int(self._state[3])

    def set_epoch(self, epoch: int) -> None:
        """Shard order, shuffle buffer and clip sampling all change with the epoch."""
        self._state[0] = epoch

    def set_position(self, epoch: int, consumed: int, batch_size: int = 1) -> None:
        """Start at `epoch`, skipping the first `consumed` items of the rank's sequence (a multiple of
        `batch_size`, the DataLoader's, which is kept for later epochs too). A later `set_epoch` to another epoch
        clears the skip."""
        if consumed < 0 or batch_size < 1 or consumed % batch_size:
            raise ValueError(f"consumed ({consumed}) must be a non-negative multiple of batch_size ({batch_size})")
        self._state.copy_(torch.tensor([epoch, epoch, consumed, batch_size]))

    def num_samples(self) -> int | None:
        """Samples in all shards, from the shards.json index `prepare` writes, or None without one."""
        counts = {}
        for folder in {Path(s).parent for s in self.shards}:
            if (folder / INDEX_FILE).is_file():
                counts.update({str(folder / name): samples for name, samples in read_index(folder)})
        if not all(s in counts for s in self.shards):
            return None
        return sum(counts[s] for s in self.shards)

    def _reader(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _rank_samples(self, epoch: int, count: bool) -> Iterator[_Sample]:
        """This rank's complete samples of one epoch, in shard order; with `count`, counts what is left out."""
        order = np.arange(len(self.shards))
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        shards = [self.shards[i] for i in order]
        by_sample = len(shards) < self.world_size
        if not by_sample:
            shards = shards[self.rank :: self.world_size]
        seen = 0
        for shard in shards:
            # A sample without its video or caption counts as missing once the shard goes on past it; when the
            # shard is cut right after it, it lost them to the cut, and the bad shard is the one count.
            lacking = None
            try:
                for key, members in scan_tar_samples(shard):
                    if lacking and count:
                        self.counter.add("missing", lacking)
                    lacking = None
                    seen += 1
                    if by_sample and (seen - 1) % self.world_size != self.rank:
                        continue
                    video = next((members[e[1:]] for e in VIDEO_EXTENSIONS if e[1:] in members), None)
                    if video is None or "txt" not in members:
                        lacking = f"sample {key} of {shard} lacks a {'video' if video is None else 'caption'} member"
                        continue
                    yield _Sample(shard, key, video, members["txt"], epoch)
            except (tarfile.TarError, OSError) as err:
                if count and (not by_sample or self.rank == 0):  # every rank reads it then; one counts it
                    self.counter.add("bad_shard", f"{shard}: {err}")
            else:
                if lacking and count:
                    self.counter.add("missing", lacking)

    def _sequence(self, epoch: int, count: bool) -> Iterator[tuple[_Sample, _Window]]:
        """The rank's samples in the order they go out, each with the window it went out of."""
        while True:
            rng = np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None
            window = _Window(self.shuffle_buffer, rng)
            for sample in window.run(self._rank_samples(epoch, count)):
                yield sample, window
            if not self.repeat:
                return
            epoch += 1

    def _load(self, sample: _Sample, window: _Window, files: MemberReader) -> dict:
        # One stream per sample draws its clip and, after a failed read, the replacement and its clip.
        rng = item_rng(self.seed, sample.epoch, sample.key)
        current = sample
        for attempt in range(self.max_retries + 1):
            try:
                video = files.read(current.shard, *current.video)
                caption = files.read(current.shard, *current.caption).decode("utf-8", errors="replace").strip()
                return load_clip(video, caption, self.clip, rng)
            except VideoReadError as err:
                self.counter.add(err.reason, f"sample {current.key} of {current.shard}: {err}", count=attempt == 0)
                last_error = err
            spares = window.spares()
            if not spares:
                break
            current = spares[int(rng.integers(len(spares)))]
        raise InputError(unreadable_in_a_row(attempt + 1, "samples", last_error, self.clip))

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = self._reader()
        epoch, position_epoch, consumed, batch_size = self._state.tolist()
        start = consumed if position_epoch == epoch else 0
        files = MemberReader()
        try:
            for index, (sample, window) in enumerate(self._sequence(epoch, count=worker == 0)):
                # The DataLoader takes batch n from worker n % num_workers, counting from where it starts.
                if index < start or ((index - start) // batch_size) % num_workers != worker:
                    continue
                yield self._load(sample, window, files)
        finally:
            files.close()

"""From the config's data section to a dataset and a resumable, per-process DataLoader.

Map-style datasets (WebVid CSV, captioned folder, synthetic) are split across processes by `EpochSampler`, which
shuffles with (seed, epoch) and can start mid-epoch, so a resumed run sees exactly the clips it would have seen.
Tar shards stream as an IterableDataset that splits itself across ranks, gives each rank's batches in an order that
does not depend on `num_workers` (it is told the batch size), and resumes with `set_position`. Either way a run may
resume with another `num_workers` and see the same clips.

An `InputError` raised in a DataLoader worker (a dataset none of whose videos can be read) reaches the caller as
its own one line, not wrapped in the worker's traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from animatediff.data.synthetic import MovingSquares
from animatediff.errors import InputError
from animatediff.train.config import DataConfig


def build_dataset(config: DataConfig, seed: int, rank: int, world_size: int) -> Dataset:
    """The training dataset the data section describes; clear errors for missing paths or empty folders."""
    if config.kind == "custom":
        raise InputError("data.kind 'custom' has no dataset of its own: pass one as Trainer(config, dataset=...)")
    if config.kind == "synthetic":
        return MovingSquares(config.synthetic_clips, config.num_frames, config.resolution, seed)
    from animatediff.data import ClipConfig, ShardDataset, VideoFolderDataset, WebVidDataset

    clip = ClipConfig(
        num_frames=config.num_frames, stride=config.stride, size=config.resolution, flip=config.random_flip
    )
    if config.kind == "webvid":
        if not config.csv or not config.video_folder:
            raise InputError("data.kind 'webvid' needs data.csv (videoid, name, page_dir) and data.video_folder")
        return WebVidDataset(config.csv, config.video_folder, clip, seed, count_absent=rank == 0)
    if config.kind == "folder":
        if not config.video_folder:
            raise InputError("data.kind 'folder' needs data.video_folder (videos with same-named .txt captions)")
        return VideoFolderDataset(config.video_folder, clip, seed)
    if not config.shards:
        raise InputError("data.kind 'shards' needs data.shards: tar files, folders or globs")
    # One pass per epoch; ranks may get different numbers of batches per pass, so each rank keeps its own
    # (epoch, batch) position and the run is bounded by optimizer steps, not epochs.
    return ShardDataset(config.shards, clip, seed, rank=rank, world_size=world_size)


class EpochSampler(Sampler[int]):
    """Indices for one process: a (seed, epoch) permutation, every `world_size`-th entry from `rank`, optionally
    starting `start` entries in. The permutation is cut to a multiple of `world_size`, so all ranks agree on
    the number of steps per epoch."""

    def __init__(self, size: int, rank: int, world_size: int, seed: int, shuffle: bool = True) -> None:
        self.size, self.rank, self.world_size, self.seed, self.shuffle = size, rank, world_size, seed, shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        usable = self.size - self.size % self.world_size
        return order[:usable][self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.size // self.world_size - self.start)


class ClipLoader:
    """Batches of one process, epoch after epoch, from a given (epoch, batches already taken) position."""

    def __init__(
        self, dataset: Dataset, batch_size: int, num_workers: int, seed: int, rank: int, world_size: int
    ) -> None:
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.seed, self.rank = seed, rank
        self.iterable = isinstance(dataset, IterableDataset)
        self.sampler = None
        if not self.iterable:
            self.sampler = EpochSampler(len(dataset), rank, world_size, seed)
            if len(dataset) // world_size < batch_size:
                raise InputError(
                    f"the dataset has {len(dataset)} clips: fewer than one batch of {batch_size} for each of "
                    f"{world_size} processes"
                )

    def batches_per_epoch(self) -> int | None:
        return None if self.iterable else (len(self.dataset) // self.sampler.world_size) // self.batch_size

    def epoch(self, epoch: int, start_batch: int = 0) -> EpochBatches:
        """The batches of `epoch`, skipping its first `start_batch` batches without loading them."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        if self.iterable:
            if hasattr(self.dataset, "set_position"):  # also tells a stream the batch size its order follows
                self.dataset.set_position(epoch, start_batch * self.batch_size, self.batch_size)
            elif start_batch:
                raise InputError("this streaming dataset cannot resume mid-epoch (it has no set_position)")
        else:
            self.sampler.set_epoch(epoch, start_batch * self.batch_size)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            # Worker seeds from (seed, rank, epoch): the same every time this epoch is replayed.
            generator=torch.Generator().manual_seed(self.seed * 1000 + self.rank * 100_003 + epoch),
        )
        return EpochBatches(loader)


def worker_error_line(err: InputError) -> str | None:
    """The message of an `InputError` a DataLoader worker raised, which torch re-raises in this process with the
    worker's traceback as its message: the traceback's last line, less the exception's name. None for an
    `InputError` raised here."""
    text = str(err)
    if not text.startswith("Caught ") or "\n" not in text:
        return None
    name, colon, message = text.rstrip().splitlines()[-1].partition(": ")
    return message if colon and name.endswith(type(err).__name__) else None


class EpochBatches:
    """One epoch's batches from a DataLoader; an input error from one of its workers is raised as its one line."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        try:
            yield from self.loader
        except InputError as err:
            line = worker_error_line(err)
            if line is None:
                raise
            raise type(err)(line) from err

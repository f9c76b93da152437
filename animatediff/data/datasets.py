"""Video-caption datasets: the WebVid CSV layout, a folder of videos with `.txt` captions, and tar shards.

Every item is `{"pixel_values": (f, 3, size, size) in [-1, 1], "text": str}` (see clips.py). A video that cannot
give a clip is skipped and another one takes its place (a random other index, as the official code does; in the
shard stream a random sample near it), at most `max_retries` times in a row: then the data is taken to be broken,
an `InputError`. Skips are logged, and counted under their reason in `dataset.skipped` once per pass over the data:
a bad video counts when it is the item asked for, not again when it is drawn as some other item's replacement, so
each is counted by the one rank and worker it was handed to, and the counts of all ranks add up. Randomness is per
item, from (seed, epoch, index or key), so a resumed run draws the same clips.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from animatediff.data.clips import ClipConfig, item_rng, load_clip
from animatediff.data.video_reader import VideoReadError
from animatediff.errors import InputError, InputNotFound

logger = logging.getLogger("animatediff.data")

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
"""File endings taken as videos in folders and shards."""
SKIP_REASONS = ("missing", "unreadable", "corrupt", "too_short", "bad_shard")
"""Why an item was skipped; the keys of `dataset.skipped`."""
WEBVID_COLUMNS = ("videoid", "name", "page_dir")
"""Columns of the WebVid-10M CSV files: video id, caption, and the page folder."""
_COUNTER_ROWS = 64
_LOGGED_PER_REASON = 5


class SkipCounter:
    """Skips per reason, summed over the main process and its DataLoader workers.

    The counts live in shared memory, one row per worker, so each worker writes only its own row and the trainer
    reads the totals from the dataset object it holds (workers work on copies).
    """

    def __init__(self) -> None:
        self._counts = torch.zeros(_COUNTER_ROWS, len(SKIP_REASONS), dtype=torch.int64).share_memory_()
        self._logged: dict[str, int] = {}

    def add(self, reason: str, message: str, count: bool = True) -> None:
        """Log a skip and, with `count`, count it. A replacement that fails too is logged (at debug level) but
        not counted: it is some other item's video, counted when that item's turn comes."""
        if not count:
            logger.debug("replacement skipped too (%s): %s", reason, message)
            return
        self.add_many(reason, 1)
        # Log the first few of each kind per process in full; at 10M clips the counts tell the rest.
        logged = self._logged.get(reason, 0)
        self._logged[reason] = logged + 1
        level = logging.WARNING if logged < _LOGGED_PER_REASON else logging.DEBUG
        logger.log(level, "skipped video (%s): %s", reason, message)

    def add_many(self, reason: str, number: int) -> None:
        """Count `number` skips of one reason without logging them."""
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % (_COUNTER_ROWS - 1)
        self._counts[row, SKIP_REASONS.index(reason)] += number

    def totals(self) -> dict[str, int]:
        return dict(zip(SKIP_REASONS, self._counts.sum(0).tolist()))


class StringTable:
    """Many strings in one byte buffer plus offsets.

    A list of 10M Python strings is copied page by page into every forked DataLoader worker as reference counts
    change; two numpy arrays are not.
    """

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode() for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        return self._buffer[self._offsets[index] : self._offsets[index + 1]].tobytes().decode()


class VideoClipDataset(Dataset):
    """Map-style dataset over (video path, caption) pairs; the WebVid and folder layouts build one of these."""

    def __init__(
        self,
        videos: Sequence[str | os.PathLike],
        captions: Sequence[str],
        clip: ClipConfig | None = None,
        seed: int = 0,
        max_retries: int = 20,
    ) -> None:
        if len(videos) != len(captions):
            raise InputError(f"got {len(videos)} videos but {len(captions)} captions")
        if not videos:
            raise InputError("the dataset has no videos")
        if max_retries < 0:
            raise InputError(f"max_retries must be non-negative, got {max_retries}")
        self.videos = StringTable([str(v) for v in videos])
        self.captions = StringTable(list(captions))
        self.clip = clip or ClipConfig()
        self.seed = seed
        self.max_retries = max_retries
        self.counter = SkipCounter()
        # Shared so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def skipped(self) -> dict[str, int]:
        """Videos skipped so far, per reason (see SKIP_REASONS), over all DataLoader workers."""
        return self.counter.totals()

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Items of a new epoch draw new clips (start, flip) from the same videos."""
        self._epoch.fill_(epoch)

    def __getitem__(self, index: int) -> dict:
        epoch = self.epoch
        # One stream per item draws its clip and, after a failed read, the replacement video and its clip: all
        # reproducible, and two bad items replaced by the same video still get different clips.
        rng = item_rng(self.seed, epoch, index)
        current = index
        for attempt in range(self.max_retries + 1):
            try:
                return load_clip(self.videos[current], self.captions[current], self.clip, rng)
            except VideoReadError as err:
                self.counter.add(err.reason, str(err), count=attempt == 0)
                last_error = err
            # Like the official code, replace a bad video by a random other one.
            current = int(rng.integers(0, len(self)))
        raise InputError(unreadable_in_a_row(self.max_retries + 1, "videos", last_error, self.clip))


def unreadable_in_a_row(attempts: int, what: str, last_error: Exception, clip: ClipConfig) -> str:
    """The one-line message for a dataset none of whose tries gave a clip."""
    last = " ".join(str(last_error).split())
    return (
        f"{attempts} {what} in a row could not be read (the last: {last}); check the videos / data settings "
        f"(a clip takes {clip.num_frames} frames {clip.stride} apart and needs videos of at least {clip.shortest})"
    )


def _find_videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def list_video_folder(folder: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Videos under `folder` (recursively) and the text of the `.txt` file beside each (same name)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder of videos")
    if not folder.is_dir():
        raise InputNotFound(f"video folder {folder} does not exist")
    videos = _find_videos(folder)
    if not videos:
        raise InputError(f"no videos in {folder} (looked for {', '.join(VIDEO_EXTENSIONS)})")
    missing = [v for v in videos if not v.with_suffix(".txt").is_file()]
    if missing:
        names = ", ".join(str(v.relative_to(folder)) for v in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(
            f"{len(missing)} of {len(videos)} videos in {folder} have no caption file (<video name>.txt): {names}{more}"
        )
    return videos, [v.with_suffix(".txt").read_text(encoding="utf-8").strip() for v in videos]


def _listing(cache: dict[str, set[str]], folder: Path) -> set[str]:
    if folder.name not in cache:
        cache[folder.name] = {entry.name for entry in os.scandir(folder)} if folder.is_dir() else set()
    return cache[folder.name]


def read_webvid_csv(csv_path: str | os.PathLike, video_folder: str | os.PathLike) -> tuple[list[Path], list[str], int]:
    """(video paths, captions, number of CSV rows whose video is absent) for a WebVid CSV and its video folder.

    Videos are looked up as `<folder>/<videoid>.mp4` (the official layout), then `<folder>/<page_dir>/<videoid>.mp4`
    (the layout of the WebVid download scripts).
    """
    csv_path, video_folder = Path(csv_path), Path(video_folder)
    if not csv_path.is_file():
        raise InputNotFound(f"WebVid CSV {csv_path} does not exist")
    if not video_folder.is_dir():
        raise InputNotFound(f"video folder {video_folder} does not exist")
    top_level = {entry.name for entry in os.scandir(video_folder)}
    page_dirs: dict[str, set[str]] = {}  # listed once each: one stat per row is slow at 10M rows
    videos, captions, absent = [], [], 0
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing_columns = [c for c in WEBVID_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_columns:
            raise InputError(
                f"{csv_path} lacks the WebVid column(s) {', '.join(missing_columns)}; it needs "
                f"{', '.join(WEBVID_COLUMNS)} (found: {', '.join(reader.fieldnames or []) or 'nothing'})"
            )
        for row in reader:
            name = f"{row['videoid']}.mp4"
            if name in top_level:
                videos.append(video_folder / name)
            elif row["page_dir"] in top_level and name in _listing(page_dirs, video_folder / row["page_dir"]):
                videos.append(video_folder / row["page_dir"] / name)
            else:
                absent += 1
                continue
            captions.append(row["name"])
    if not videos:
        raise InputError(
            f"none of the {absent} videos listed in {csv_path} is in {video_folder} "
            f"(expected <videoid>.mp4 or <page_dir>/<videoid>.mp4)"
        )
    return videos, captions, absent


class VideoFolderDataset(VideoClipDataset):
    """Every video under a folder, captioned by the `.txt` file of the same name beside it."""

    def __init__(
        self, folder: str | os.PathLike, clip: ClipConfig | None = None, seed: int = 0, max_retries: int = 20
    ) -> None:
        videos, captions = list_video_folder(folder)
        super().__init__(videos, captions, clip, seed, max_retries)


class WebVidDataset(VideoClipDataset):
    """The WebVid-10M layout: a CSV (videoid, name = caption, page_dir) and a folder of `<videoid>.mp4`.

    Rows whose video is absent are dropped up front and counted under "missing" (WebVid downloads always
    lose some), unless `count_absent` is off: every rank of a distributed run reads the whole CSV, and one counts.
    """

    def __init__(
        self,
        csv_path: str | os.PathLike,
        video_folder: str | os.PathLike,
        clip: ClipConfig | None = None,
        seed: int = 0,
        max_retries: int = 20,
        count_absent: bool = True,
    ) -> None:
        videos, captions, absent = read_webvid_csv(csv_path, video_folder)
        super().__init__(videos, captions, clip, seed, max_retries)
        if absent and count_absent:
            self.counter.add_many("missing", absent)
            logger.warning(
                "%d of %d videos listed in %s are not in %s; training on the %d found",
                absent,
                absent + len(videos),
                csv_path,
                video_folder,
                len(videos),
            )


def open_dataset(
    path: str | os.PathLike,
    video_folder: str | os.PathLike | None = None,
    clip: ClipConfig | None = None,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    **kwargs,
) -> Dataset:
    """The dataset layout `path` points at: a `.csv` (WebVid, videos in `video_folder`, default the CSV's folder),
    `.tar` shards (a file, a folder of them or with a shards.json index, or a glob), or a folder of videos with
    `.txt` captions.

    `rank`/`world_size` only matter for shards (map-style datasets are split by the trainer's sampler); extra
    keyword arguments go to the dataset class.
    """
    from animatediff.data.shard_index import INDEX_FILE, find_shards
    from animatediff.data.shards import ShardDataset

    text = str(path)
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return WebVidDataset(path, video_folder or path.parent, clip, seed, **kwargs)
    holds_shards = path.is_dir() and ((path / INDEX_FILE).is_file() or any(path.glob("*.tar")))
    if path.suffix == ".tar" or any(c in text for c in "*?[") or holds_shards:
        return ShardDataset(find_shards(text), clip, seed, rank=rank, world_size=world_size, **kwargs)
    return VideoFolderDataset(path, clip, seed, **kwargs)

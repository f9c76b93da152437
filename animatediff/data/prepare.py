"""Turn a folder of captioned videos (or a WebVid CSV and its folder) into tar shards for streaming.

Optionally re-encodes each video with its shorter side at `resize` pixels and a short keyframe interval: shards
shrink several-fold from WebVid's 336×596, and training seeks land close to the clip. Unreadable and too-short
videos are left out and counted.

The output folder must be empty, or `overwrite` given (its shards and index are removed first). The shards.json
index is written last, and only when the whole run succeeded with at least one sample: a run that fails leaves
no index and none of its shards.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from tqdm.auto import tqdm

from animatediff.data.datasets import SKIP_REASONS, list_video_folder, read_webvid_csv
from animatediff.data.shard_index import INDEX_FILE, ShardWriter
from animatediff.data.video_reader import VideoReader, VideoReadError
from animatediff.errors import InputError

logger = logging.getLogger("animatediff.data")


@dataclass
class PrepareReport:
    shards: list[Path]
    """The shard files written, in order."""
    written: int
    """Samples written."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Videos left out, per reason (see SKIP_REASONS)."""

    def summary(self) -> str:
        """'skipped: 2 corrupt, 1 too_short' (or 'skipped: none')."""
        return "skipped: " + (", ".join(f"{n} {reason}" for reason, n in self.skipped.items()) or "none")


def reencode(source: str | os.PathLike, short_side: int, keyframe_interval: int = 16, crf: int = 20) -> bytes:
    """The video as H.264 MP4 bytes with its shorter side at `short_side` (never enlarged), all frames kept."""
    try:
        with av.open(str(source)) as src, io.BytesIO() as buffer:
            stream_in = src.streams.video[0]
            height, width = stream_in.codec_context.height, stream_in.codec_context.width
            scale = min(1.0, short_side / min(height, width))
            # yuv420p wants even sides.
            out_w, out_h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
            rate = stream_in.average_rate or stream_in.guessed_rate or 25
            with av.open(buffer, mode="w", format="mp4") as dst:
                stream = dst.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = out_w, out_h, "yuv420p"
                stream.options = {
                    "crf": str(crf),
                    "g": str(keyframe_interval),
                    "keyint_min": str(keyframe_interval),
                    "sc_threshold": "0",
                }
                for i, frame in enumerate(src.decode(stream_in)):
                    # Constant-rate timestamps: decoded frame i is frame i of the output, whatever the input's.
                    out = frame.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="AREA")
                    out.pts, out.time_base = i, 1 / Fraction(rate)
                    dst.mux(stream.encode(out))
                dst.mux(stream.encode())
            return buffer.getvalue()
    except (av.error.FFmpegError, OSError, IndexError) as err:
        raise VideoReadError(f"re-encoding failed ({err})", "corrupt", str(source)) from err


def check_output_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder under a regular file, or one holding anything unless `overwrite`."""
    blocking = next((p for p in (out_dir, *out_dir.parents) if p.exists() or p.is_symlink()), None)
    if blocking is not None and not blocking.is_dir():
        raise InputError(f"cannot write shards to {out_dir}: {blocking} is a file, not a folder")
    if out_dir.is_dir() and not overwrite and any(out_dir.iterdir()):
        raise InputError(
            f"the output folder {out_dir} is not empty: choose an empty or new folder, or pass --overwrite "
            f"(overwrite=True) to replace the shards and {INDEX_FILE} in it"
        )


def remove_shards(out_dir: Path) -> None:
    """Remove a folder's shards.json index first, then its `.tar` shards and unfinished `.tar.tmp` ones."""
    (out_dir / INDEX_FILE).unlink(missing_ok=True)
    for pattern in ("*.tar", "*.tar.tmp", f".{INDEX_FILE}.*.tmp"):
        for path in out_dir.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()


def _remove_empty(folder: Path, created: bool) -> None:
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _key(path: Path, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem) or "video"
    key, n = base, 1
    while key in used:
        key, n = f"{base}_{n}", n + 1
    used.add(key)
    return key


def load_video_for_shard(
    path: Path, resize: int | None, min_frames: int, keyframe_interval: int
) -> tuple[str, bytes] | VideoReadError:
    """(member extension, bytes) of one checked (and optionally re-encoded) video, or the reason to leave it out.

    Returns the error rather than raising it, so that pool workers hand it back like a result.
    """
    try:
        with VideoReader(path) as reader:
            if reader.info.num_frames < min_frames:
                raise VideoReadError(f"has {reader.info.num_frames} frames, needs {min_frames}", "too_short", str(path))
            reader.read([0])  # a file that opens but does not decode is caught here, not in training
        if resize:
            return "mp4", reencode(path, resize, keyframe_interval)
        return path.suffix.lower().lstrip("."), path.read_bytes()
    except VideoReadError as err:
        return err


def _load_task(task: tuple) -> tuple[str, bytes] | VideoReadError:
    return load_video_for_shard(*task)


def prepare_shards(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    csv_path: str | os.PathLike | None = None,
    resize: int | None = None,
    min_frames: int = 16,
    keyframe_interval: int = 16,
    num_workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> PrepareReport:
    """Shards of `<key>.mp4` + `<key>.txt` from the videos in `source` (captions from `.txt` files beside them, or
    from the WebVid CSV `csv_path`) in the folder `out_dir`, which must be empty unless `overwrite` (its shards and
    index are then removed first). Videos with fewer than `min_frames` frames or that do not decode are skipped
    and logged. `num_workers` processes check and re-encode videos (0: this process); shards keep the source
    order. A run that fails, or finds no usable video, removes the shards it wrote and writes no index."""
    if resize is not None and resize < 8:
        raise InputError(f"resize must be at least 8 pixels, got {resize}")
    if min_frames < 1:
        raise InputError(f"min_frames must be at least 1, got {min_frames}")
    if num_workers < 0:
        raise InputError(f"num_workers must be non-negative, got {num_workers}")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    if csv_path is not None:
        videos, captions, skipped["missing"] = read_webvid_csv(csv_path, source)
    else:
        videos, captions = list_video_folder(source)
    created = not out_dir.exists()
    if overwrite and out_dir.is_dir():
        remove_shards(out_dir)
    tasks = [(Path(v), resize, min_frames, keyframe_interval) for v in videos]
    used: set[str] = set()
    try:
        with contextlib.ExitStack() as stack:
            if num_workers:
                pool = stack.enter_context(multiprocessing.get_context().Pool(num_workers))
                results = pool.imap(_load_task, tasks, chunksize=4)
            else:
                results = map(_load_task, tasks)
            writer = stack.enter_context(ShardWriter(out_dir, shard_size))
            bar = tqdm(
                zip(videos, captions, results), total=len(videos), desc="prepare", unit="video", disable=not progress
            )
            for path, caption, result in bar:
                if isinstance(result, VideoReadError):
                    skipped[result.reason] += 1
                    logger.warning("skipped video (%s): %s", result.reason, result)
                    continue
                extension, data = result
                writer.write(_key(Path(path), used), {extension: data, "txt": caption.encode("utf-8")})
            shards = [writer.out_dir / s["name"] for s in writer.shards]
            written = sum(s["samples"] for s in writer.shards)
    except BaseException:  # the writer removed its shards; a folder this run made goes too
        _remove_empty(out_dir, created)
        raise
    if not written:
        _remove_empty(out_dir, created)
        counts = ", ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
        raise InputError(f"none of the {len(videos)} videos in {source} could be used (skipped: {counts})")
    return PrepareReport(shards, written, {k: v for k, v in skipped.items() if v})

"""Decode only the frames a clip needs, with PyAV: seek to the keyframe before the first one, decode forward.

A 16-frame clip at stride 4 spans 61 frames; a WebVid video has a few hundred. Seeking skips the decode of
everything before the clip, which is most of the work when the clip starts late (see benchmarks/data_benchmark.py).
Every failure surfaces as `VideoReadError` with a `reason`, so datasets can skip and count instead of crashing.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

VideoSource = str | os.PathLike | bytes
"""A file path, or the bytes of a whole video file (a member of a tar shard)."""

TAIL_SLACK = 2
"""Container frame counts are often one or two too high; frames wanted past the real end within this many
frames reuse the last decoded frame instead of failing the video."""


class VideoReadError(Exception):
    """A video that cannot give the frames asked for.

    `reason` is one of "missing" (no such file), "unreadable" (no demuxer/decoder accepts it, or no video stream),
    "corrupt" (decoding failed part-way) or "too_short" (fewer frames than needed).
    """

    def __init__(self, message: str, reason: str, source: str = "") -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.message = message
        self.reason = reason
        self.source = source

    def __reduce__(self) -> tuple:
        # Travels between processes (prepare's pool) with its reason intact.
        return type(self), (self.message, self.reason, self.source)


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    """Frames in the video, from the container when it says, else estimated (see `VideoReader`)."""
    fps: float | None
    """Frames per second, or None when the container gives no rate (then frames are counted, not timed)."""
    height: int
    """Frame height in pixels."""
    width: int
    """Frame width in pixels."""


def _describe(source: VideoSource) -> str:
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)


class VideoReader:
    """An open video: `info` from the stream metadata, `read(indices)` → uint8 (n, H, W, 3).

    Frame count comes from `stream.frames`; when the container leaves it out (WebM, some MKV) it is estimated
    from duration × fps, and when both are missing the video is decoded once to count. `threads` is the decoder's
    thread count; 1 suits DataLoader workers, which already run one video per process.
    """

    def __init__(self, source: VideoSource, threads: int = 1) -> None:
        self.name = _describe(source)
        if not isinstance(source, bytes) and not Path(source).is_file():
            raise VideoReadError("no such file", "missing", self.name)
        self._source = source
        self._threads = threads
        self._open()
        self._start = self._stream.start_time or 0
        self.info = self._probe()

    def _open(self) -> None:
        source = self._source
        try:
            self._container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise VideoReadError(f"cannot open ({err})", "unreadable", self.name) from err
        if not self._container.streams.video:
            self.close()
            raise VideoReadError("no video stream", "unreadable", self.name)
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = self._threads
        self._fresh = True  # nothing decoded since opening: no rewind needed

    def _rewind(self) -> None:
        if self._fresh:
            return
        try:
            self._container.seek(self._start, stream=self._stream, backward=True)
        except av.error.FFmpegError:  # raw streams cannot seek at all: start over
            self.close()
            self._open()

    def _probe(self) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration:
            duration = self._container.duration / av.time_base
        num_frames = stream.frames
        if not num_frames and fps and duration:
            num_frames = int(round(duration * fps))
        if fps is None and num_frames and duration:
            fps = num_frames / duration
        if not num_frames:
            num_frames = self._count_frames()
        return VideoInfo(num_frames, fps, stream.codec_context.height, stream.codec_context.width)

    def _count_frames(self) -> int:
        count = 0
        self._fresh = False
        try:
            for _ in self._container.decode(self._stream):
                count += 1
        except av.error.FFmpegError as err:
            raise VideoReadError(f"decoding failed while counting frames ({err})", "corrupt", self.name) from err
        return count

    def _frame_index(self, frame: av.VideoFrame, counter: int) -> int:
        if frame.pts is None or self.info.fps is None or self._stream.time_base is None:
            return counter
        return int(round(float((frame.pts - self._start) * self._stream.time_base) * self.info.fps))

    def read(self, indices: Sequence[int], seek: bool = True) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 (n, H, W, 3).

        With `seek`, jump to the keyframe at or before the first wanted frame and number frames by their
        presentation timestamps (a wanted frame missing from a variable-rate stream takes the next one); without,
        decode from the start and number frames by count. A seek that lands wrong falls back to the latter.
        """
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            raise ValueError("no frame indices given")
        if wanted[0] < 0:
            raise ValueError(f"frame indices must be non-negative, got {wanted[0]}")
        if wanted[-1] >= self.info.num_frames + TAIL_SLACK:
            raise VideoReadError(
                f"needs frame {wanted[-1]} but has {self.info.num_frames} frames", "too_short", self.name
            )
        can_seek = seek and wanted[0] > 0 and self.info.fps is not None and self._stream.time_base is not None
        try:
            got = self._decode(wanted, seek=can_seek)
            if got is None:  # the seek landed after the first wanted frame: this container's index lies
                got = self._decode(wanted, seek=False)
        except av.error.FFmpegError as err:
            raise VideoReadError(f"decoding failed ({err})", "corrupt", self.name) from err
        try:
            return np.stack([got[int(i)] for i in indices])
        except ValueError as err:  # frame size changed mid-stream
            raise VideoReadError(f"inconsistent frame sizes ({err})", "corrupt", self.name) from err

    def _decode(self, wanted: list[int], seek: bool) -> dict[int, np.ndarray] | None:
        stream = self._stream
        if seek:
            # Aim half a frame early so rounding in the timestamp cannot land us one frame late.
            target = (wanted[0] - 0.5) / self.info.fps / float(stream.time_base)
            try:
                self._container.seek(self._start + max(0, math.floor(target)), stream=stream, backward=True)
            except av.error.FFmpegError:
                return None
        else:
            self._rewind()
            stream = self._stream  # rewinding may have reopened the file
        self._fresh = False
        got: dict[int, np.ndarray] = {}
        pending = iter(wanted)
        next_wanted = next(pending)
        last_index, last_frame = -1, None
        for counter, frame in enumerate(self._container.decode(stream)):
            # From the start, the decode count is the frame number (and survives broken timestamps); after a
            # seek only the timestamp says where we are.
            index = self._frame_index(frame, counter) if seek else counter
            if seek and counter == 0 and index > next_wanted:
                return None
            if index < next_wanted:
                continue
            array = frame.to_ndarray(format="rgb24")
            last_index, last_frame = index, array
            while next_wanted is not None and next_wanted <= index:
                got[next_wanted] = array
                next_wanted = next(pending, None)
            if next_wanted is None:
                return got
        if last_frame is None:
            if seek:  # nothing at or after the seek point: retry from the start before calling it too short
                return None
            raise VideoReadError(
                f"needs frame {next_wanted} but no frame decoded at or after it", "too_short", self.name
            )
        if wanted[-1] > last_index + TAIL_SLACK:
            raise VideoReadError(f"needs frame {wanted[-1]} but the last frame is {last_index}", "too_short", self.name)
        for index in wanted:
            got.setdefault(index, last_frame)
        return got

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_video_frames(source: VideoSource, indices: Sequence[int], seek: bool = True, threads: int = 1) -> np.ndarray:
    """Frames at `indices` of one video as uint8 (n, H, W, 3); raises `VideoReadError`."""
    with VideoReader(source, threads=threads) as reader:
        return reader.read(indices, seek=seek)

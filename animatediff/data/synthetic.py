"""Tiny synthetic videos for tests and benchmarks: a moving square (as frames, as video files, or as a captioned
training dataset), frames that carry their own index, broken files.

Frame `i` of an index-coded video is split in two halves whose grey levels spell `i` in base 16
(left = i // 16, right = i % 16, each times 16), so a test can read back which frame it decoded even after
lossy compression.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from animatediff.errors import InputError

INDEX_LEVEL = 16
"""Grey-level step between consecutive digits of an index-coded frame."""
MAX_CODED_INDEX = 255
"""Largest frame index two base-16 digits can carry."""


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
"""The named colours of `MovingSquares`."""
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
"""The named directions of `MovingSquares`: (rows, columns) per step."""


def square_clip(
    background: np.ndarray, colour: tuple[int, int, int], start: tuple[int, int], step: tuple[int, int], frames: int
) -> np.ndarray:
    """(f, H, W, 3) uint8: a square a quarter of the shorter side wide over `background` (H, W, 3), its top-left
    corner at `start` (row, column) moving by `step` each frame and wrapping round the edges, so it keeps moving
    for any clip length."""
    height, width = background.shape[:2]
    side = max(2, min(height, width) // 4)
    clip = np.repeat(background[None], frames, axis=0)
    for t in range(frames):
        rows = (start[0] + step[0] * t + np.arange(side)) % height
        cols = (start[1] + step[1] * t + np.arange(side)) % width
        clip[t][np.ix_(rows, cols)] = colour
    return clip


def moving_square_frames(num_frames: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """(f, H, W, 3) uint8: a square of a random colour sliding diagonally across a dark, noisy background."""
    rng = np.random.default_rng(seed)
    background = np.full((height, width, 3), 24, dtype=np.uint8)
    background += rng.integers(0, 16, size=(height, width, 3), dtype=np.uint8)
    colour = tuple(int(c) for c in rng.integers(96, 256, size=3))
    return square_clip(background, colour, (height // 3, 0), (1, 2), num_frames)


class MovingSquares(Dataset):
    """Captioned clips of a square of one colour sliding one way across a dark background, drawn in memory: a
    training dataset for smoke tests and benchmarks, no files needed.

    Items follow the training-data contract of `animatediff.data`: {"pixel_values": (f, 3, H, W) in [-1, 1],
    "text": "a red square moving left"}. Clip i is fully determined by (seed, i), so runs are reproducible in any
    worker."""

    def __init__(self, num_clips: int = 64, num_frames: int = 16, size: int = 32, seed: int = 0) -> None:
        if num_clips < 1 or num_frames < 1 or size < 8:
            raise InputError(
                f"MovingSquares needs num_clips ≥ 1, num_frames ≥ 1, size ≥ 8 (got {num_clips}, {num_frames}, {size})"
            )
        self.num_clips, self.num_frames, self.size, self.seed = num_clips, num_frames, size, seed

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        colour, direction = rng.choice(list(COLOURS)), rng.choice(list(DIRECTIONS))
        start = tuple(int(v) for v in rng.integers(0, self.size, size=2))
        speed = max(1, self.size // (2 * self.num_frames))
        step = tuple(speed * d for d in DIRECTIONS[direction])
        background = np.full((self.size, self.size, 3), 25, dtype=np.uint8)
        clip = square_clip(background, COLOURS[colour], start, step, self.num_frames)
        pixels = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return {"pixel_values": pixels, "text": f"a {colour} square moving {direction}"}


def index_coded_frames(num_frames: int, height: int = 32, width: int = 32) -> np.ndarray:
    """(f, H, W, 3) uint8 whose left/right halves encode each frame's index (see the module docstring)."""
    if num_frames - 1 > MAX_CODED_INDEX:
        raise ValueError(f"index-coded videos hold at most {MAX_CODED_INDEX + 1} frames, asked for {num_frames}")
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i, :, : width // 2] = (i // 16) * INDEX_LEVEL
        frames[i, :, width // 2 :] = (i % 16) * INDEX_LEVEL
    return frames


def decode_frame_index(frame: np.ndarray) -> int:
    """Inverse of `index_coded_frames` for one (H, W, 3) frame; robust to a few levels of codec error."""
    width = frame.shape[1]
    # Stay away from the middle column, where chroma subsampling blurs the two halves together.
    margin = max(1, width // 8)
    high = frame[:, margin : width // 2 - margin].mean() / INDEX_LEVEL
    low = frame[:, width // 2 + margin : width - margin].mean() / INDEX_LEVEL
    return int(round(high)) * 16 + int(round(low))


def write_video(
    frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0, keyframe_interval: int = 12, crf: int = 10
) -> Path:
    """Encode uint8 frames (f, H, W, 3) as H.264 MP4 with a keyframe every `keyframe_interval` frames."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 with yuv420p needs even frame sizes, got {height}x{width}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Fixed GOP and no scene-cut keyframes, so seeking behaves the same on every machine.
        stream.options = {
            "crf": str(crf),
            "g": str(keyframe_interval),
            "keyint_min": str(keyframe_interval),
            "sc_threshold": "0",
        }
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_synthetic_video(
    path: str | os.PathLike,
    num_frames: int = 24,
    size: int = 32,
    fps: float = 8.0,
    index_coded: bool = False,
    keyframe_interval: int = 12,
    seed: int = 0,
) -> Path:
    """A square `size`×`size` MP4 of `num_frames` frames: a moving square, or index-coded frames."""
    frames = (
        index_coded_frames(num_frames, size, size)
        if index_coded
        else moving_square_frames(num_frames, size, size, seed)
    )
    return write_video(frames, path, fps=fps, keyframe_interval=keyframe_interval)


def write_corrupt_video(path: str | os.PathLike, seed: int = 0) -> Path:
    """A file named like a video that no demuxer can read: the first bytes of a real MP4, cut short, then noise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    good = path.with_name(path.stem + ".tmp-good.mp4")
    write_synthetic_video(good, num_frames=8, seed=seed)
    # Libx264 in MP4 puts the index (moov) at the end; keeping only the start loses it.
    data = good.read_bytes()[:64] + np.random.default_rng(seed).bytes(256)
    good.unlink()
    path.write_bytes(data)
    return path


def write_dataset_folder(
    folder: str | os.PathLike,
    num_videos: int = 4,
    num_frames: int = 24,
    size: int = 32,
    corrupt: int = 0,
    too_short: int = 0,
    short_frames: int = 4,
    captions: bool = True,
) -> list[Path]:
    """A folder of `video_XXX.mp4` + `video_XXX.txt` pairs; the first `corrupt`, then `too_short` videos are bad."""
    folder = Path(folder)
    paths = []
    for i in range(num_videos):
        path = folder / f"video_{i:03d}.mp4"
        if i < corrupt:
            write_corrupt_video(path, seed=i)
        elif i < corrupt + too_short:
            write_synthetic_video(path, num_frames=short_frames, size=size, seed=i)
        else:
            write_synthetic_video(path, num_frames=num_frames, size=size, seed=i)
        if captions:
            path.with_suffix(".txt").write_text(f"a square moving, clip {i}\n")
        paths.append(path)
    return paths

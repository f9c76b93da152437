"""Writing frames (f, H, W, 3) in [0, 1] as GIF, MP4, WebP, .npy or numbered PNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from animatediff.errors import InputError

FORMATS = (".gif", ".mp4", ".webp", ".npy")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Pick the format from the extension; a path without one is a folder of numbered PNGs."""
    path = Path(path)
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected frames of shape (frames, height, width, 3), got {frames.shape}")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    if suffix and suffix not in FORMATS:
        raise InputError(f"unsupported output format {suffix!r}; use one of {', '.join(FORMATS)} or a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, frames)
    elif suffix in (".gif", ".webp"):
        images = [Image.fromarray(f) for f in to_uint8(frames)]
        images[0].save(
            path,
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
            **({"lossless": True} if suffix == ".webp" else {}),
        )
    elif suffix == ".mp4":
        _write_mp4(to_uint8(frames), path, fps)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(to_uint8(frames)):
            Image.fromarray(frame).save(path / f"{i:04d}.png")
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    from fractions import Fraction

    import av

    # yuv420p needs even sizes; pad by edge replication rather than resampling.
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def grid(videos: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally shaped videos (f, H, W, 3) into one video, row-major."""
    n = len(videos)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    blank = np.zeros_like(videos[0])
    cells = list(videos) + [blank] * (rows * columns - n)
    return np.concatenate([np.concatenate(cells[r * columns : (r + 1) * columns], axis=2) for r in range(rows)], axis=1)

"""Writing frames (f, H, W, 3) in [0, 1] as GIF, MP4, WebP, .npy or numbered PNGs, each whole or not at all."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from animatediff.errors import InputError
from animatediff.io.atomic import write_atomic, write_folder_atomic
from animatediff.io.outputs import check_output_path

FORMATS = (".gif", ".mp4", ".webp", ".npy")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def is_png_folder(folder: Path) -> bool:
    """Whether `folder` holds nothing but numbered PNGs (an earlier output that a new one may replace)."""
    return all(re.fullmatch(r"\d+\.png", entry.name) for entry in folder.iterdir())


def check_video_path(path: str | os.PathLike, option: str = "output") -> Path:
    """Before any work: the format is known, and the file (or PNG folder) can be written there."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in FORMATS:
        raise InputError(f"{option} {path}: unsupported format {suffix}; use {', '.join(FORMATS)} or a folder")
    return check_output_path(path, option, folder=not suffix, replaceable=is_png_folder)


def seeded_path(path: str | os.PathLike, seed: int) -> Path:
    """`path` with `-SEED` before its extension (a folder of PNGs: at its end): circle.gif → circle-5.gif."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{seed}{path.suffix}")


def check_finite(frames: np.ndarray, path: str | os.PathLike) -> None:
    """Frames holding NaN or inf would be written as black pixels: an InputError saying why, instead."""
    frames = np.asarray(frames)
    bad = int(frames.size - np.isfinite(frames).sum())
    if bad:
        raise InputError(
            f"the frames hold {bad} of {frames.size} values that are not finite (NaN or inf): the model's weights "
            f"are broken (e.g. a diverged motion module) or overflowed in half precision; nothing written to {path}"
        )


def save_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Pick the format from the extension; a path without one is a folder of numbered PNGs.

    Written under a temporary name and renamed, so the path holds the whole video or what it held before; a PNG
    folder replaces an earlier one whole.
    """
    path = Path(path)
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected frames of shape (frames, height, width, 3), got {frames.shape}")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    if suffix and suffix not in FORMATS:
        raise InputError(f"unsupported output format {suffix!r}; use one of {', '.join(FORMATS)} or a folder")
    if not suffix:
        pixels = to_uint8(frames)
        return write_folder_atomic(path, lambda tmp: _write_pngs(pixels, tmp), replaceable=is_png_folder)
    return write_atomic(path, lambda tmp: WRITERS[suffix](frames, tmp, fps))


def _write_npy(frames: np.ndarray, path: Path, fps: float) -> None:
    with path.open("wb") as f:  # a file object: np.save given a name would append ".npy" to it
        np.save(f, frames)


def _write_animated(frames: np.ndarray, path: Path, fps: float, image_format: str) -> None:
    images = [Image.fromarray(f) for f in to_uint8(frames)]
    images[0].save(
        path,
        format=image_format,
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
        **({"lossless": True} if image_format == "WEBP" else {}),
    )


def _write_pngs(pixels: np.ndarray, folder: Path) -> None:
    for i, frame in enumerate(pixels):
        Image.fromarray(frame).save(folder / f"{i:04d}.png", format="PNG")


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    from fractions import Fraction

    import av

    # yuv420p needs even sizes; pad by edge replication rather than resampling.
    pixels = to_uint8(frames)
    h, w = pixels.shape[1:3]
    pixels = np.pad(pixels, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = pixels.shape[2], pixels.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


WRITERS: dict[str, Callable[[np.ndarray, Path, float], None]] = {
    ".npy": _write_npy,
    ".gif": lambda frames, path, fps: _write_animated(frames, path, fps, "GIF"),
    ".webp": lambda frames, path, fps: _write_animated(frames, path, fps, "WEBP"),
    ".mp4": _write_mp4,
}


def grid(videos: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally shaped videos (f, H, W, 3) into one video, row-major."""
    n = len(videos)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    blank = np.zeros_like(videos[0])
    cells = list(videos) + [blank] * (rows * columns - n)
    return np.concatenate([np.concatenate(cells[r * columns : (r + 1) * columns], axis=2) for r in range(rows)], axis=1)

"""Input videos for video-to-video: a video file (PyAV), an animated GIF or WebP, a folder of frames, a .npy array,
or frames in memory, made into the clip a pipeline denoises.

Two stages, so that a command line can check its input before any model loads and size it after:

- `read_video_input(source, num_frames, stride)`: frames 0, s, 2s, … (s = `stride`; 1 keeps the input's own rate)
  of the input as float32 (num_frames, h, w, 3) in [0, 1], at the input's own size. Only the frames needed are
  kept; a file is decoded only as far as its last needed frame.
- `fit_frames(frames, height, width)`: each frame scaled so that it covers height × width (the shorter side to its
  size, for a square) with antialiased bilinear resampling, then center-cropped; frames already of that size are
  returned as they are.

`video_frames` does both. Bad input is a one-line `InputError`: a missing path, an empty folder, a file no decoder
reads, frames of different sizes, values outside [0, 1], or fewer frames than asked for (saying how many the input
has, and the most `num_frames` and `stride` that fit).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence, UnidentifiedImageError

from animatediff.errors import InputError, InputNotFound

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
"""Image files a folder of frames is read from (in name order, numbers by value: 2 before 10)."""
PIL_ANIMATIONS = (".gif", ".webp")
"""Animated images read with Pillow, which composes each frame over the ones before as the format says."""

VideoInput = str | os.PathLike | np.ndarray | torch.Tensor
"""A path (video file, GIF, WebP, folder of frames, .npy) or frames (f, H, W, 3): floats in [0, 1] or uint8."""


def frame_indices(num_frames: int, stride: int = 1) -> list[int]:
    """The input frames a clip of `num_frames` takes at `stride`: 0, stride, 2·stride, …"""
    return [i * stride for i in range(num_frames)]


def check_counts(num_frames: int, stride: int, options: tuple[str, str] = ("num_frames", "video_stride")) -> None:
    """`num_frames` and `stride` are positive integers (`options`: what an error calls them)."""
    for name, value in zip(options, (num_frames, stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer of at least 1, got {value!r}")


def too_few_frames(
    name: str, available: int, num_frames: int, stride: int, options: tuple[str, str] = ("num_frames", "video_stride")
) -> InputError:
    """The error for an input of `available` frames asked for `num_frames` every `stride`: how many it has, how
    many the request needs, and what would fit (`options` names the frame count and the stride, e.g. the command
    line's "--frames" and "--video-stride")."""
    need = (num_frames - 1) * stride + 1
    frames_option, stride_option = options
    fits = [f"{frames_option} {(available - 1) // stride + 1} or fewer"] if available else []
    if available >= num_frames > 1 and stride > 1:
        fits.append(f"{stride_option} {(available - 1) // (num_frames - 1)} or less")
    hint = f"; ask for {' or '.join(fits)}" if fits else ""
    return InputError(f"{name} has {available} frames, but {num_frames} frames at stride {stride} need {need}{hint}")


def read_video_input(
    source: VideoInput,
    num_frames: int,
    stride: int = 1,
    options: tuple[str, str] = ("num_frames", "video_stride"),
) -> np.ndarray:
    """Frames 0, `stride`, 2·`stride`, … of `source`, `num_frames` of them, as float32 (num_frames, h, w, 3) in
    [0, 1] at the input's own size. `options`: what the error for too few frames calls the frame count and the
    stride."""
    check_counts(num_frames, stride, options)
    indices = frame_indices(num_frames, stride)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        frames = as_frames(source, "video")
        if len(frames) <= indices[-1]:
            raise too_few_frames("the video", len(frames), num_frames, stride, options)
        return frames[indices]
    path = Path(source).expanduser()
    if not path.exists():
        raise InputNotFound(f"input video not found: {path}")
    if path.is_dir():
        frames, available = _read_folder(path, indices)
    elif path.suffix.lower() == ".npy":
        frames, available = _read_npy(path, indices)
    elif path.suffix.lower() in PIL_ANIMATIONS:
        frames, available = _read_animation(path, indices)
    else:
        frames, available = _read_with_pyav(path, indices)
    if frames is None:
        raise too_few_frames(str(path), available, num_frames, stride, options)
    return frames


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frames (f, h, w, 3) scaled to cover `height` × `width` (antialiased bilinear) and center-cropped to it, as
    float32 in [0, 1]; frames already that size come back unchanged."""
    f, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(frames, dtype=np.float32)
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return x[:, :, top : top + height, left : left + width].permute(0, 2, 3, 1).contiguous().numpy()


def video_frames(
    source: VideoInput,
    num_frames: int,
    height: int,
    width: int,
    stride: int = 1,
    options: tuple[str, str] = ("num_frames", "video_stride"),
) -> np.ndarray:
    """`read_video_input` then `fit_frames`: the clip (num_frames, height, width, 3) in [0, 1] a start encodes."""
    return fit_frames(read_video_input(source, num_frames, stride, options), height, width)


def as_frames(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Frames (f, H, W, 3) as float32 in [0, 1]: uint8 divided by 255, floats checked."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[-1] != 3 or min(array.shape) < 1:
        raise InputError(f"{name}: expected frames of shape (frames, height, width, 3), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 or float frames, got {array.dtype}")
    if not np.isfinite(array).all():
        raise InputError(f"{name}: float frames must be finite and in [0, 1], got NaN or infinite values")
    if array.min() < 0.0 or array.max() > 1.0:
        low, high = float(array.min()), float(array.max())
        raise InputError(f"{name}: float frames must be finite and in [0, 1], got values from {low} to {high}")
    return array.astype(np.float32)


def _stack(images: Sequence[np.ndarray], name: str) -> np.ndarray:
    sizes = sorted({image.shape[:2] for image in images})
    if len(sizes) > 1:
        raise InputError(f"{name}: its frames differ in size ({sizes[0]} and {sizes[-1]}, as height × width)")
    return np.stack(images).astype(np.float32) / 255.0


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """One image file as float32 (H, W, 3) in [0, 1]; an InputNotFound or InputError naming it as `what`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputNotFound(f"{what} not found: {os.fspath(path)}")
    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{what} {os.fspath(path)}: not a readable image ({err})") from None


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_folder(folder: Path, indices: list[int]) -> tuple[np.ndarray | None, int]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS), key=_natural_key)
    if not files:
        raise InputError(f"{folder}: a folder of frames holds no {', '.join(FRAME_EXTENSIONS)} images")
    _check_numbering(folder, files)
    if indices[-1] >= len(files):
        return None, len(files)
    images = []
    for index in indices:
        try:
            with Image.open(files[index]) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"{files[index]}: cannot read this frame ({err})") from None
    return _stack(images, str(folder)), len(files)


def _check_numbering(folder: Path, files: list[Path]) -> None:
    """Frames named by their numbers alone (0000.png, 1.png) are read as consecutive frames: a gap in the numbers
    (a missing frame, or keyframes 0, 8, 16 meant for their frames) is one line rather than frames read out of
    place."""
    if not all(p.stem.isdigit() for p in files):
        return
    numbers = [int(p.stem) for p in files]
    for before, after in zip(numbers, numbers[1:]):
        if after != before + 1:
            raise InputError(
                f"{folder}: frame {after} follows frame {before}; a folder of frames is read as one frame after "
                "another, so number them without gaps"
            )


def _read_npy(path: Path, indices: list[int]) -> tuple[np.ndarray | None, int]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim == 4 and indices[-1] >= len(array):
        return None, len(array)
    return as_frames(np.asarray(array[indices] if array.ndim == 4 else array), str(path)), len(array)


def _read_animation(path: Path, indices: list[int]) -> tuple[np.ndarray | None, int]:
    wanted = set(indices)
    got: dict[int, np.ndarray] = {}
    count = 0
    try:
        with Image.open(path) as image:
            for count, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if count - 1 in wanted:
                    got[count - 1] = np.asarray(frame.convert("RGB"))
                if count > indices[-1]:
                    break
    except (UnidentifiedImageError, OSError, EOFError) as err:
        raise InputError(f"{path}: cannot decode this image file ({err})") from None
    if len(got) < len(wanted):
        return None, count
    return _stack([got[i] for i in indices], str(path)), count


def _read_with_pyav(path: Path, indices: list[int]) -> tuple[np.ndarray | None, int]:
    import av

    wanted = set(indices)
    got: dict[int, np.ndarray] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            for count, frame in enumerate(container.decode(stream), start=1):
                if count - 1 in wanted:
                    got[count - 1] = frame.to_ndarray(format="rgb24")
                if count > indices[-1]:
                    break
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot decode this video ({err})") from None
    if count == 0:
        raise InputError(f"{path}: cannot decode this video (no frame decoded)")
    if len(got) < len(wanted):
        return None, count
    return _stack([got[i] for i in indices], str(path)), count

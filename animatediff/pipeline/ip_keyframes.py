"""A run entry's IP-Adapter images at keyframes: `ip_image` as {frame: image(s)}, or as a folder of images named by
their frame (0000.png, 0016.jpg: animatediff-cli-prompt-travel's `ip_adapter_map` `input_image_dir`), each keyframe
held for `ip_fixed_ratio` of the gap to the next before the embedding travels on (prompt-travel's
`prompt_fixed_ratio` of its `ip_adapter_map`), and the last towards the clip's end when the keyframes go round.
The pipeline interpolates the frames between (`pipeline/ip_call.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.prompt_travel import check_fixed_ratio, frame_index, held_keyframes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""The image files a keyframe folder's frames are read from."""
NUMBERED = re.compile(r"\d+")


def folder_keyframes(folder: str | Path, num_frames: int, what: str = "IP-Adapter keyframe images") -> dict[int, str]:
    """{frame: path} of the images in `folder` named by a number, frames below `num_frames` only (as prompt-travel
    reads its folders); an InputError starting with `what` when there is none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFound(f"{what}: folder not found: {folder}")
    frames: dict[int, str] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and NUMBERED.fullmatch(path.stem) and int(path.stem) < num_frames:
            frames.setdefault(int(path.stem), str(path))
    if not frames:
        raise InputError(f"{what}: {folder} holds no image named by a frame below {num_frames}")
    return dict(sorted(frames.items()))


def entry_ip_images(
    images: list[str] | dict[int, list[str]],
    num_frames: int,
    fixed_ratio: float,
    loop: bool,
    resolve: Callable[[str], str] = str,
) -> list[str] | dict[int, list[str]]:
    """What an entry's `ip_image` hands `IPAdapter`: its paths placed by `resolve`; keyframes (a mapping, or a
    folder's numbered images) held by `fixed_ratio` (and round the clip's end with `loop`)."""
    if isinstance(images, dict):
        keyed = {frame: [resolve(p) for p in paths] for frame, paths in images.items()}
    elif len(images) == 1 and Path(resolve(images[0])).expanduser().is_dir():
        keyed = {frame: [path] for frame, path in folder_keyframes(resolve(images[0]), num_frames).items()}
    else:
        return [resolve(image) for image in images]
    return held_keyframes(keyed, fixed_ratio, num_frames if loop else None)


def entry_image_paths(images: list[str] | dict[int, list[str]]) -> list[str]:
    """Every path an entry's `ip_image` names (a keyframe folder is one)."""
    return [p for paths in images.values() for p in paths] if isinstance(images, dict) else list(images)


def check_ip_image_keys(values: dict, where: str) -> None:
    """`ip_image` (a path, a list of paths or {frame: path or paths}) and `ip_fixed_ratio`, checked in place: lists
    throughout; an InputError starting with `where`."""
    if isinstance(values.get("ip_image"), str):
        values["ip_image"] = [values["ip_image"]]
    images = values.get("ip_image")
    paths = isinstance(images, list) and all(isinstance(i, str) for i in images)
    if images is not None and not isinstance(images, dict) and not paths:
        raise InputError(f"{where}: ip_image must be a path or a list of paths, got {images!r}")
    if isinstance(images, dict):
        keyed = {}
        for key, paths in images.items():
            frame = frame_index(key, f"{where}: ip_image")
            paths = [paths] if isinstance(paths, str) else paths
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
                raise InputError(f"{where}: ip_image at frame {frame}: give a path or a list of paths")
            keyed[frame] = paths
        values["ip_image"] = dict(sorted(keyed.items()))
    ratio = values.get("ip_fixed_ratio", 0.0)
    try:
        check_fixed_ratio(ratio)
    except InputError:
        raise InputError(f"{where}: ip_fixed_ratio must be a number from 0 to 1, got {ratio!r}") from None

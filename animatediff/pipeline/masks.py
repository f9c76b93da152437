"""Masks over a clip: what regional prompts, video inpainting, the motion attention map and an IP-Adapter's mask
read, and how they are fitted to a size.

A mask source is one image for every frame (a file, a PIL image, or an array (H, W) in [0, 1]), an array (F, H, W)
with one per frame, a folder of images named by their frame (0000.png, 0016.png: animatediff-cli-prompt-travel's
mask folders), or {frame: image}. A frame without a mask of its own keeps the last one before it; frames before the
first have none (black).

A mask is fitted as prompt-travel fits it: in grey, resized to the output's size (Lanczos), white where it is at least
half white, then taken to the latent size by nearest neighbour.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.ip_keyframes import IMAGE_SUFFIXES, folder_keyframes
from animatediff.pipeline.prompt_travel import frame_index

MaskImage = str | os.PathLike | np.ndarray | Image.Image
"""One mask: an image file, a PIL image, or an array (H, W) in [0, 1] (or (F, H, W): a mask per frame)."""
MaskSource = MaskImage | Mapping[int, MaskImage]


def mask_frames(mask: MaskSource, num_frames: int, what: str) -> dict[int, MaskImage]:
    """{frame: mask image} of one mask source (module docstring), keyframes in order (an array (F, H, W) is one
    image per frame); one line starting with `what` for a mask that is not found, not an image or not in [0, 1]."""
    if isinstance(mask, Mapping):
        frames = {frame_index(k, f"{what} mask"): v for k, v in mask.items()}
    elif isinstance(mask, (str, os.PathLike)) and Path(mask).expanduser().is_dir():
        frames = dict(folder_keyframes(mask, num_frames, f"{what} mask"))
    elif isinstance(mask, np.ndarray) and mask.ndim == 3:
        frames = dict(enumerate(mask[:num_frames]))
    else:
        frames = {0: mask}
    for frame, image in frames.items():
        if isinstance(image, (str, os.PathLike)):
            path = Path(image).expanduser()
            if not path.is_file():
                raise InputNotFound(f"{what} mask: file not found: {path}")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{what} mask: {path} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        elif isinstance(image, np.ndarray):
            if image.ndim != 2 or not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
                raise InputError(f"{what} mask at frame {frame}: an array must be (H, W) with values in [0, 1]")
        elif not isinstance(image, Image.Image):
            raise InputError(f"{what} mask at frame {frame}: expected an image, a path or an array, got {image!r}")
    if not any(frame < num_frames for frame in frames):
        raise InputError(f"{what} mask: no mask at a frame below {num_frames}")
    return dict(sorted(frames.items()))


def _fitted(image: MaskImage, height: int, width: int, latent: tuple[int, int]) -> torch.Tensor:
    """One mask, binary, at the latent size (h, w): grey, Lanczos to width × height, ≥ half white, nearest down."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.round(image.astype(np.float64) * 255).astype(np.uint8))
    elif not isinstance(image, Image.Image):
        with Image.open(Path(image).expanduser()) as opened:
            image = opened.convert("RGB")
    grey = np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS).convert("L"), np.float32) / 255
    white = torch.from_numpy((grey >= 0.5).astype(np.float32))[None, None]
    return F.interpolate(white, size=latent, mode="nearest")[0, 0]


def fitted_masks(
    mask: MaskSource, num_frames: int, height: int, width: int, latent: tuple[int, int], what: str
) -> torch.Tensor:
    """(frames, h, w): one mask source fitted to the latent size (module docstring), each frame's the last keyframe's
    at or before it, frames before the first keyframe all black; `what` names it in errors ("region 0")."""
    masks = torch.zeros(num_frames, *latent)
    for frame, image in mask_frames(mask, num_frames, what).items():
        if frame < num_frames:
            masks[frame:] = _fitted(image, height, width, latent)
    return masks

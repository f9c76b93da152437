"""From a video to one training item: pick frame indices, decode them, flip, resize, crop, scale to [-1, 1].

The item is the contract with the trainer: `{"pixel_values": FloatTensor (f, 3, size, size) in [-1, 1],
"text": str}`. Sampling follows the official WebVid dataset (guoyww/AnimateDiff, animatediff/data/dataset.py):
16 frames 4 apart from a random start, squeezed evenly over the whole video when it is shorter than that.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from animatediff.data.video_reader import VideoReader, VideoReadError, VideoSource
from animatediff.errors import InputError


@dataclass
class ClipConfig:
    num_frames: int = 16
    """Frames per clip (the official recipe trains on 16)."""
    stride: int = 4
    """Frames between consecutive clip frames in the source video; shorter videos get a smaller spacing."""
    size: int = 256
    """Side of the square output: shorter side resized to this, then center-cropped."""
    flip: bool = True
    """Flip the whole clip horizontally with probability 0.5."""
    min_frames: int | None = None
    """Videos with fewer frames are skipped as too short. None: `num_frames` (no repeated frames); lower it to
    accept shorter videos, whose frames then repeat, as the official code allows."""
    seek: bool = True
    """Seek to the keyframe before the clip instead of decoding the video from its start."""

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise InputError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.stride < 1:
            raise InputError(f"stride must be at least 1, got {self.stride}")
        if self.size < 8:
            raise InputError(f"size must be at least 8 pixels, got {self.size}")
        if self.min_frames is not None and self.min_frames < 1:
            raise InputError(f"min_frames must be at least 1, got {self.min_frames}")

    @property
    def shortest(self) -> int:
        """Fewest frames a usable video has."""
        return self.num_frames if self.min_frames is None else self.min_frames


def item_rng(seed: int, epoch: int, key: int | str) -> np.random.Generator:
    """The random stream of one item, fixed by (seed, epoch, index or sample key): the same whichever worker,
    rank or resumed run draws it."""
    if isinstance(key, str):
        key = zlib.crc32(key.encode())
    return np.random.default_rng([seed, epoch, key])


def clip_indices(video_frames: int, config: ClipConfig, rng: np.random.Generator) -> np.ndarray:
    """`num_frames` indices `stride` apart from a random start; spread evenly over short videos (official code)."""
    if video_frames < config.shortest:
        raise VideoReadError(f"has {video_frames} frames, needs at least {config.shortest}", "too_short")
    span = min(video_frames, (config.num_frames - 1) * config.stride + 1)
    start = int(rng.integers(0, video_frames - span + 1))
    return np.linspace(start, start + span - 1, config.num_frames, dtype=int)


def resize_center_crop(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (f, H, W, 3) → float (f, 3, size, size) in [0, 1]: shorter side to `size`, center crop.

    Cropping the centred square first and resizing it is the same picture as resize-then-crop, and resizes
    fewer pixels.
    """
    height, width = frames.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + side, left : left + side]))
    video = square.permute(0, 3, 1, 2).float() / 255.0  # (f, 3, side, side)
    if side != size:
        video = F.interpolate(video, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return video.clamp_(0.0, 1.0)


def transform_clip(frames: np.ndarray, config: ClipConfig, rng: np.random.Generator) -> torch.Tensor:
    """uint8 (f, H, W, 3) → float (f, 3, size, size) in [-1, 1], flipped as a whole with probability 0.5."""
    video = resize_center_crop(frames, config.size)
    if config.flip and rng.random() < 0.5:
        video = video.flip(-1)
    return video * 2.0 - 1.0


def load_clip(source: VideoSource, text: str, config: ClipConfig, rng: np.random.Generator) -> dict:
    """One training item from one video; raises `VideoReadError` when the video cannot give a clip."""
    with VideoReader(source) as reader:
        try:
            indices = clip_indices(reader.info.num_frames, config, rng)
        except VideoReadError as err:
            raise VideoReadError(str(err), err.reason, reader.name) from None
        frames = reader.read(indices, seek=config.seek)
    return {"pixel_values": transform_clip(frames, config, rng), "text": text}

"""A start from a picture (the A1111 AnimateDiff extension's img2vid): video-to-video from a still clip of the first
frame's picture whose later frames are let go to noise, so that the clip starts at the picture and moves away from
it; optionally ending at a last frame's picture the same way.

Frame i keeps the first picture's latents by α_i = max(0, 1 − i^power / scale) and, with a last frame, the last
picture's by β_i = max(0, 1 − (f − 1 − i)^power_last / scale_last), both divided by α_i + β_i where they sum past 1;
the rest, 1 − α_i − β_i, is latent noise: clean_i = α_i·first + β_i·last + (1 − α_i − β_i)·ε. That clip is then the
video of a video-to-video start (`pipeline/video_start.py`): noised to the first timestep of `strength` and denoised
under the prompt. The extension's defaults are power 1 and scale 32: over 16 frames the first picture's share falls
from 1 to 0.53.

Each picture is encoded as a still video, a posterior sample per frame, as diffusers' video-to-video encodes a still
clip; where every frame keeps all of its pictures (α_i + β_i = 1 everywhere), no noise is drawn, and the start is
diffusers' video-to-video of the still clip (tests/test_image_start.py). The extension draws ε from the same
generator as the start's noise; so does this.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from animatediff.errors import InputError

DEFAULT_POWER, DEFAULT_SCALE = 1.0, 32.0
"""The A1111 AnimateDiff extension's latent power and latent scale."""

Picture = str | os.PathLike | np.ndarray
"""An image file, or an (H, W, 3) array in [0, 1] (or uint8)."""


@dataclass(frozen=True, eq=False)
class ImageStart:
    """Start a clip from `first` (and end it at `last`), by the module docstring's shares; given as a call's
    `video`, with its `strength`."""

    first: Picture
    last: Picture | None = None
    power: float = DEFAULT_POWER
    scale: float = DEFAULT_SCALE
    last_power: float = DEFAULT_POWER
    last_scale: float = DEFAULT_SCALE

    def __post_init__(self) -> None:
        for name in ("power", "last_power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise InputError(f"image start {name} {value!r} must be a finite number ≥ 0")
        for name in ("scale", "last_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"image start {name} {value!r} must be a number > 0")

    def shares(self, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(α, β): each frame's share of the first picture and of the last (zeros without one), (num_frames,)."""
        i = np.arange(num_frames, dtype=np.float64)
        first = np.clip(1 - i**self.power / self.scale, 0, None)
        last = np.zeros(num_frames)
        if self.last is not None:
            last = np.clip(1 - i[::-1] ** self.last_power / self.last_scale, 0, None)
        total = first + last
        over = total > 1
        first[over], last[over] = first[over] / total[over], last[over] / total[over]
        return first, last

    def pictures(self, height: int, width: int) -> np.ndarray:
        """The first picture (and the last), read and fitted to height × width: (1 or 2, H, W, 3) in [0, 1]."""
        from animatediff.io.video_input import as_frames, fit_frames, read_image

        pictures = []
        for name, picture in (("first frame", self.first), ("last frame", self.last)):
            if picture is None:
                continue
            if isinstance(picture, (str, os.PathLike)):
                picture = read_image(picture, f"{name} picture")
            pictures.append(fit_frames(as_frames(np.asarray(picture)[None], f"{name} picture"), height, width)[0])
        return np.stack(pictures)


ENTRY_KEYS = {"first": "first", "last": "last", "latent_power": "power", "latent_scale": "scale",
              "latent_power_last": "last_power", "latent_scale_last": "last_scale"}  # fmt: skip
"""A run entry's `init_image` mapping's keys (the A1111 extension's names) and the `ImageStart` fields they give."""


def check_image_start_key(values: dict, where: str) -> None:
    """A run entry's `init_image`, checked in place: a picture's path, or a mapping of ENTRY_KEYS with `first`;
    made a mapping; not beside a `video` (`where` names the entry in errors)."""
    value = values.get("init_image")
    if not value:
        values.pop("init_image", None)
        return
    if values.get("video"):
        raise InputError(f"{where}: give video or init_image to start from, not both")
    if isinstance(value, str):
        value = {"first": value}
    unknown = set(value) - set(ENTRY_KEYS) if isinstance(value, dict) else None
    if unknown is None or unknown or not isinstance(value.get("first"), str):
        raise InputError(
            f"{where}: init_image takes a picture's path or {{first: PATH, last: PATH, latent_power, latent_scale, "
            f"latent_power_last, latent_scale_last}}, got {value!r}"
        )
    if value.get("last") is not None and not isinstance(value["last"], str):
        raise InputError(f"{where}: init_image's last must be a path, got {value['last']!r}")
    try:
        entry_image_start(value, str)
    except InputError as err:
        raise InputError(f"{where}: init_image: {err}") from None
    values["init_image"] = value


def entry_image_start(value: dict, resolve: Callable[[str], str]) -> ImageStart:
    """The `ImageStart` of a checked `init_image` mapping, its paths through `resolve` (relative to the config)."""
    fields = {ENTRY_KEYS[key]: item for key, item in value.items() if item is not None}
    fields["first"] = resolve(fields["first"])
    if "last" in fields:
        fields["last"] = resolve(fields["last"])
    return ImageStart(**fields)


__all__ = ["DEFAULT_POWER", "DEFAULT_SCALE", "ImageStart", "check_image_start_key", "entry_image_start"]

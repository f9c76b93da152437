"""FreeNoise for long clips: its options, and the predictor that runs the UNet with window-fused motion attention.

Qiu et al., "FreeNoise: Tuning-Free Longer Video Diffusion via Noise Rescheduling", ICLR 2024 (arXiv 2310.15169),
as diffusers' `AnimateDiffPipeline.enable_free_noise(context_length, context_stride, weighting_scheme,
noise_type)` runs it. Two parts, both switched on by `pipe(..., free_noise=FreeNoise(...))`:

- noise rescheduling, a start (`pipeline/start.py`, `free_noise_start`): frames past the first window reuse
  earlier frames' noise in a shuffled local order;
- window-fused temporal attention (`models/free_noise.py`): the motion modules attend within sliding windows of
  `context_length` frames moved by `context_stride` and fuse them with weights, while the rest of the UNet runs
  on every frame at once (so per-frame text reaches each frame as it is).

FreeNoise replaces the sliding context windows (`sampling/context.py`, the whole UNet per window): a call asking
for both is an input error (`check_free_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from animatediff.errors import InputError
from animatediff.models import AnimationUNet
from animatediff.models.free_noise import AttentionWindows
from animatediff.sampling import Predictor

NOISE_TYPES = ("shuffle_context", "repeat_context", "random")
"""How the start noise of frames past the first window is made, by diffusers' names."""


@dataclass(frozen=True)
class FreeNoise:
    """FreeNoise's options (diffusers' `enable_free_noise` arguments, with its defaults)."""

    context_length: int = 16
    """Frames the motion modules attend over at once: at most the motion module's position encoding (usually 16,
    24 or 32; the length it was trained on is best)."""
    context_stride: int = 4
    """Frames between the starts of neighbouring windows, 1…context_length: 16 and 4 run 24 frames as [0, 16),
    [4, 20), [8, 24)."""
    weighting: str = "pyramid"
    """How the windows' outputs are fused per frame: 'flat', 'pyramid' (favours a window's centre) or
    'delayed_reverse_sawtooth' (low weights early in a window, falling ones late)."""
    noise_type: str = "shuffle_context"
    """'shuffle_context': each stretch of `context_stride` frames past the first window takes the noise of the
    frames `context_length` earlier, in a random order (the paper's noise rescheduling); 'repeat_context': the
    first window's noise, repeated; 'random': independent noise for every frame (the plain start)."""

    def __post_init__(self) -> None:
        AttentionWindows(self.context_length, self.context_stride, self.weighting)  # checks those three
        if self.noise_type not in NOISE_TYPES:
            raise InputError(f"FreeNoise noise_type {self.noise_type!r} is not one of: {', '.join(NOISE_TYPES)}")

    @property
    def windows(self) -> AttentionWindows:
        """Where the motion modules attend."""
        return AttentionWindows(self.context_length, self.context_stride, self.weighting)


def check_free_noise(free_noise: FreeNoise | None, context_length: int | None) -> None:
    """FreeNoise windows the motion modules itself: asking for the sliding context windows too is an error."""
    if free_noise is not None and not isinstance(free_noise, FreeNoise):
        raise InputError(f"free_noise must be a FreeNoise or None, got {type(free_noise).__name__}")
    if free_noise is not None and context_length is not None:
        raise InputError(
            f"context_length {context_length} asks for sliding context windows, which FreeNoise replaces: give "
            "FreeNoise(context_length=...) alone"
        )


def free_noise_predictor(predict: Predictor, unet: AnimationUNet, free_noise: FreeNoise) -> Predictor:
    """`predict` (the UNet's predictor) with `unet`'s motion modules attending in FreeNoise's fused windows during
    each call, and back to all frames at once after it."""
    windows = free_noise.windows

    def predict_free_noise(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        previous = unet.free_noise
        unet.set_free_noise(windows)
        try:
            return predict(x, t, text, frames)
        finally:
            unet.set_free_noise(previous)

    return predict_free_noise

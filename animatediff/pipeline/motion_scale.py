"""A call's motion scale (`animatediff.models.motion_scale`): a predictor wrapper that sets it on the UNet around
each prediction and restores it after, so a pipeline call never changes the UNet's own setting."""

from __future__ import annotations

import torch

from animatediff.models import AnimationUNet
from animatediff.models.motion_scale import MotionScale, motion_scales
from animatediff.sampling import Predictor


def motion_scaled(unet: AnimationUNet, predict: Predictor, scale: MotionScale | None) -> Predictor:
    """`predict` with `unet.motion_scale` at `scale` during each call (checked now); None: `predict` itself."""
    if scale is None:
        return predict
    motion_scales(scale)

    def predict_scaled(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        with unet.scaled_motion(scale):
            return predict(x, t, text, frames)

    return predict_scaled

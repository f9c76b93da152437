"""A call's motion attention scale (`models/attention_scale.py`, ComfyUI-AnimateDiff-Evolved's motion "scale"): a
number, times a map of multipliers where a mask is given (its grey level at each latent pixel of each frame: white
keeps the number, black makes it 0), set on the UNet around each prediction at that prediction's frames and put back
after it. The number may change during sampling, keyframed by the fraction of the steps it starts at, as the motion
scale's keyframes (and Evolved's scale keyframes) change it.

A mask takes the forms a region's mask takes (`pipeline/regions.py`: an image, a folder of images named by frame,
an array, {frame: image}); a frame without one keeps the last before it, and frames before the first are white. It
is taken to the latent size in grey (bilinear, antialiased), and from there to each motion module's feature size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from animatediff.models import AnimationUNet
from animatediff.models.attention_scale import check_attention_scale
from animatediff.pipeline.masks import MaskImage, MaskSource, mask_frames
from animatediff.pipeline.motion_scale import step_keyframes
from animatediff.sampling import Predictor


def check_motion_attention(
    scale: float, keyframes: Mapping[float, float] | None = None
) -> tuple[float, dict[float, float]]:
    """The scale and its keyframes by step ({fraction of the steps: scale}, as the motion scale's,
    `pipeline/motion_scale.py`) checked."""
    return check_attention_scale(scale), check_attention_scale_steps(keyframes, "motion attention scale from step")


def check_attention_scale_steps(keyframes: Mapping[float, float] | None, what: str) -> dict[float, float]:
    """{fraction of the steps: scale} in step order (`step_keyframes`), each scale one number ≥ 0 (`what` names them
    in the one line for a bad one); {} for None."""
    checked = step_keyframes(keyframes, "motion attention scale steps")
    return {fraction: check_attention_scale(value, f"{what} {fraction}:") for fraction, value in checked.items()}


def attention_map(mask: MaskSource | None, num_frames: int, latent: tuple[int, int]) -> torch.Tensor | None:
    """(frames, h, w): the mask's grey levels in [0, 1] at the latent size, each frame the last keyframe's at or before
    it, frames before the first white; None without a mask."""
    if mask is None:
        return None
    out = torch.ones(num_frames, *latent)
    for frame, image in mask_frames(mask, num_frames, "motion attention").items():
        if frame < num_frames:
            out[frame:] = _grey(image, latent)
    return out


def _grey(image: MaskImage, latent: tuple[int, int]) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        grey = torch.from_numpy(image.astype(np.float32))
    else:
        if not isinstance(image, Image.Image):
            with Image.open(Path(image).expanduser()) as opened:
                image = opened.convert("RGB")
        grey = torch.from_numpy(np.asarray(image.convert("L"), np.float32) / 255)
    return F.interpolate(grey[None, None], size=latent, mode="bilinear", antialias=True, align_corners=False)[0, 0]


def attention_scaled(unet: AnimationUNet, predict: Predictor, scale: float, mask: torch.Tensor | None) -> Predictor:
    """`predict` with the motion modules' attention scale at `scale` during each call, times `mask` (clip frames,
    h, w) at the call's frames; `predict` itself at 1 without a mask."""
    if scale == 1 and mask is None:
        return predict

    def predict_scaled(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        value = scale if mask is None else scale * mask[frames.to(mask.device)].to(x.device, x.dtype)
        with unet.scaled_attention(value):
            return predict(x, t, text, frames)

    return predict_scaled

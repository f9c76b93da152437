"""A call's motion scale (`animatediff.models.motion_scale`): a predictor wrapper that sets it on the UNet around
each prediction and restores it after, so a pipeline call never changes the UNet's own setting; and motion scales
that change during sampling, keyframed by the fraction of the steps they start at (`motion_scale_runs`), as
ComfyUI-AnimateDiff-Evolved's scale keyframes change it by their start percent."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from animatediff.errors import InputError
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


def step_keyframes(keyframes: Mapping[float, object] | None, what: str = "motion scale steps") -> dict[float, object]:
    """{fraction of the steps: value} in step order, each fraction a number from 0 to 1 (`what` names them in the
    one line for a bad one), the values as given; {} for None."""
    if keyframes is None:
        return {}
    if not isinstance(keyframes, Mapping):
        raise InputError(f"{what}: expected {{fraction of the steps: scale}}, got {keyframes!r}")
    for fraction in keyframes:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise InputError(f"{what}: {fraction!r} is not a fraction of the steps from 0 to 1")
    return dict(sorted(keyframes.items()))


def check_motion_scale_steps(keyframes: Mapping[float, MotionScale] | None) -> dict[float, MotionScale]:
    """{fraction of the steps: motion scale} in step order (`step_keyframes`), each scale checked
    (`motion_scales`); {} for None."""
    checked = step_keyframes(keyframes)
    for scale in checked.values():
        motion_scales(scale)
    return checked


def parse_motion_scale_steps(items: list[str], what: str = "motion scale steps") -> dict[float, float]:
    """ "FRACTION:SCALE" items (as --motion-scale-steps and the web form write them) as checked keyframes."""
    return check_motion_scale_steps(parse_step_keyframes(items, what))


def parse_step_keyframes(items: list[str], what: str) -> dict[float, float]:
    """ "FRACTION:VALUE" items as {fraction: value}, unchecked; one line for an item that is not two numbers."""
    keyframes = {}
    for item in items:
        try:
            fraction, scale = (float(part) for part in item.split(":"))
        except ValueError:
            raise InputError(f"{what} {item!r}: expected FRACTION:SCALE, e.g. 0.6:0.5") from None
        keyframes[fraction] = scale
    return keyframes


def motion_scale_runs(
    scale: MotionScale | None, keyframes: Mapping[float, MotionScale], steps: int
) -> list[tuple[int, MotionScale | None]]:
    """[(first 0-based step, the motion scale from it on)] over a run of `steps` steps: `scale` (None: the UNet's
    own) until the first keyframe, each keyframe's from the first step at or past its fraction of the steps; a
    keyframe falling on the step of an earlier one replaces it, one past the last step is never reached."""
    runs: list[tuple[int, MotionScale | None]] = [(0, scale)]
    for fraction, value in sorted(keyframes.items()):
        first = math.ceil(round(fraction * steps, 9))
        if first < steps:
            runs = [run for run in runs if run[0] < first] + [(first, value)]
    return runs

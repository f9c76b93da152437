"""A call's classifier-free guidance scale keyframed by step (ComfyUI-AnimateDiff-Evolved's custom CFG keyframes):
{fraction of the steps: scale}, each from the first step at or past its fraction on, the call's `guidance_scale`
before the first, as the motion scale's keyframes change it (`pipeline/motion_scale.py`).

Guidance is on for the whole call where any of its scales is above 1: the negative text is encoded and the
ControlNets', SparseCtrls' and IP-Adapter's batches are made for it. A run of steps at a scale of 1 or less then
predicts the conditional text alone, with the conditional half of those batches, as diffusers' pipelines do at a step
whose `guidance_scale` is 1 or less.
"""

from __future__ import annotations

from collections.abc import Mapping

from animatediff.errors import InputError, non_negative
from animatediff.pipeline.motion_scale import step_keyframes


def check_guidance_scale_steps(
    keyframes: Mapping[float, float] | None, what: str = "guidance scale"
) -> dict[float, float]:
    """{fraction of the steps: scale} in step order, each fraction from 0 to 1 and each scale a number ≥ 0 (`what`
    names them in the one line for a bad one); {} for None."""
    checked = step_keyframes(keyframes, f"{what} steps")
    return {fraction: non_negative(value, f"{what} from step {fraction}:") for fraction, value in checked.items()}


def check_unguided_runs(scales: list[tuple[int, float]], guiding: bool, split: bool) -> None:
    """One line where some steps run at a scale ≤ 1 inside a guided call (`scales`: [(first step, scale)]) and what
    steers it cannot give an unguided prediction its conditional half (`split` False: keyframe ControlNets, a
    reference, a call's own conditions)."""
    if guiding and not split and any(scale <= 1.0 for _, scale in scales):
        raise InputError(
            "guidance scale 1 or less for some steps: keyframe ControlNets, a reference and a call's own conditions "
            "are guided on every step; keep every scale above 1"
        )

"""Motion scale: how much of what the motion modules add an inflated UNet keeps.

Each motion module is a residual layer, out = x + m(x) (its temporal transformer's projection added to its input);
at scale s it gives x + s·(out − x) instead: 0 leaves the frames to the image model alone (as if the modules were
off), 1 is the module as trained, values between damp the motion and values above exaggerate it — the "effect"
(effect multival) of ComfyUI-AnimateDiff-Evolved; its "motion scale" (scale multival), a multiplier on the temporal
attention's keys, is `models/attention_scale.py`. A scale is one number for every
module or one per block group, {"down": s, "mid": s, "up": s} (a group left out keeps 1). It multiplies the
modules' output, so merged MotionLoRAs, whose scales change the modules' weights, are scaled along with them and
keep their own scale.
"""

from __future__ import annotations

from collections.abc import Mapping

from animatediff.errors import InputError, non_negative
from animatediff.models.motion_module import MotionModule
from animatediff.models.motion_modules import MotionModules

GROUPS = ("down", "mid", "up")

MotionScale = float | Mapping[str, float]
"""One scale for all motion modules, or one per block group ("down", "mid", "up")."""


def _check_value(value: object, name: str) -> float:
    return non_negative(value, name, "0: no motion, 1: as trained")


def motion_scales(scale: MotionScale) -> dict[str, float]:
    """The scale of each block group, checked: {"down": s, "mid": s, "up": s}."""
    if isinstance(scale, Mapping):
        unknown = sorted(str(k) for k in scale if k not in GROUPS)
        if unknown:
            raise InputError(f"motion scale group {unknown[0]!r}: expected one of {', '.join(GROUPS)}")
        return {g: _check_value(scale.get(g, 1.0), f"motion scale of {g!r}") for g in GROUPS}
    value = _check_value(scale, "motion scale")
    return dict.fromkeys(GROUPS, value)


def motion_group(motion: MotionModules, module: MotionModule) -> str:
    """The block group ("down", "mid" or "up") `module` belongs to in `motion`."""
    for group, blocks in (("down", motion.down_blocks), ("up", motion.up_blocks)):
        if any(module is m for block in blocks for m in block.motion_modules):
            return group
    return "mid"

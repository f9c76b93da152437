"""The web form's fields keyed by fractions of the steps ("FRACTION:SCALE, …"): the motion scale and the guidance
scale from a step on and the gradual latent hires fix's scales, read and checked as `generate`'s flags are, and
written as run-entry keys."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.ui.settings import Settings


def motion_scale_keyframes(s: Settings) -> dict[float, float] | None:
    """The form's "FRACTION:SCALE, …" as {fraction of the steps: motion scale}, checked; None when empty."""
    if not s.motion_scale_steps:
        return None
    from animatediff.pipeline.motion_scale import parse_motion_scale_steps

    items = re.sub(r"\s*:\s*", ":", s.motion_scale_steps).replace(",", " ").split()
    return parse_motion_scale_steps(items, "motion scale from step")


def guidance_keyframes(s: Settings) -> dict[float, float] | None:
    """The form's guidance "FRACTION:SCALE, …" as {fraction of the steps: guidance scale}, checked; None when empty."""
    if not s.guidance_scale_steps:
        return None
    from animatediff.pipeline.guidance_steps import check_guidance_scale_steps
    from animatediff.pipeline.motion_scale import parse_step_keyframes

    items = re.sub(r"\s*:\s*", ":", s.guidance_scale_steps).replace(",", " ").split()
    return check_guidance_scale_steps(parse_step_keyframes(items, "guidance from step"), "guidance")


def gradual_section(s: Settings) -> dict | None:
    """The form's gradual latent "FRACTION:SCALE, …" as a run entry's `gradual_latent`, checked; None when empty."""
    if not s.gradual_latent:
        return None
    from animatediff.cli.hires_options import read_scales
    from animatediff.pipeline.gradual_latent import entry_gradual_latent

    gradual = entry_gradual_latent({"scale": read_scales(s.gradual_latent, "gradual latent")})
    return {"scale": dict(gradual.scales)}

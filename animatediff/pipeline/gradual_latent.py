"""The gradual latent hires fix in a pipeline call (`gradual_latent=GradualLatent(...)`; the loop is
`sampling/gradual_latent.py`): what it is checked against before any model runs, and the noise it adds back.

The text (prompt travel, editing, AND, SDXL's size ids of the clip's size), IP-Adapter, context windows, FreeNoise,
PAG and the motion scale work on latents of any size and go with it. ControlNets and keyframe ControlNets resize their
control images to the latents (`controlnet.sized_control`), SparseCtrl its condition and mask, regions their weights,
video inpainting its mask and video (`sampling.gradual_latent.weights_at`), bicubic, as prompt-travel resizes its
control images, masks and start. Refused in one line: other `conditions` given to the call (what they hold is of the
clip's size) and FreeInit (which reruns the loop from noise of one size).
"""

from __future__ import annotations

import torch

from animatediff.errors import InputError
from animatediff.sampling.gradual_latent import GradualLatent


def check_gradual_latent(
    gradual: GradualLatent | None, size: tuple[int, int], multiple: int, others: dict[str, object]
) -> None:
    """Refuse, in one line, a `gradual` whose scales leave no latents of `size` (h, w latents; sides rounded down to
    `multiple`, the UNet's downsampling), or that comes with one of `others` ({what: given}, module docstring)."""
    if gradual is None:
        return
    if not isinstance(gradual, GradualLatent):
        raise InputError(f"gradual_latent must be a GradualLatent, got {type(gradual).__name__}")
    gradual.sizes(size, multiple)
    refuse_spatial(gradual, others)


def refuse_spatial(gradual: object, others: dict[str, object]) -> None:
    """With a gradual latent hires fix asked for, the first of `others` ({what: given}) given, in one line."""
    given = [name for name, value in others.items() if value]
    if gradual is not None and given:
        raise InputError(f"the gradual latent hires fix draws on smaller latents, which {given[0]} cannot follow")


def start_noise(latents: torch.Tensor, noise: torch.Tensor | None, init_noise_sigma: float) -> torch.Tensor:
    """The noise the start holds: a video start's own (`noise`), else the start itself over the scheduler's
    initial sigma (pure noise, or a given `latents` as diffusers scales it)."""
    return noise if noise is not None else latents / init_noise_sigma


def entry_gradual_latent(section: dict | None) -> GradualLatent | None:
    """A run entry's `gradual_latent` section, prompt-travel's `gradual_latent_hires_fix_map` without its switch:
    {scale: {fraction: scale}, reverse_steps, noise_add_count}; None for none."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InputError(f"gradual_latent must be a mapping {{scale, reverse_steps, noise_add_count}}, got {section!r}")
    unknown = sorted(set(section) - {"scale", "reverse_steps", "noise_add_count"})
    if unknown:
        raise InputError(f"gradual_latent: unknown key {unknown[0]!r} (scale, reverse_steps, noise_add_count)")
    given = {"scales": section.get("scale"), **{k: section.get(k) for k in ("reverse_steps", "noise_add_count")}}
    return GradualLatent(**{k: v for k, v in given.items() if v is not None})


def check_gradual_latent_keys(values: dict, where: str) -> None:
    """A run entry's `gradual_latent`, read (as `entry_gradual_latent`) and refused with what it cannot follow,
    in place; an InputError starting with `where`."""
    try:
        gradual = entry_gradual_latent(values.get("gradual_latent"))
        refuse_spatial(gradual, {"FreeInit": values.get("free_init_iters")})
    except InputError as err:
        raise InputError(f"{where}: {err}") from None

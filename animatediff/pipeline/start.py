"""The start of a run: the latents the loop begins from, at the noise level of its first timestep.

Pure noise for text-to-animation (one CPU `randn` of the whole clip, the draw the official repo and diffusers make,
scaled to the scheduler's initial sigma). A start from a video (video-to-video) is the video's latents noised to the
first timestep `sampling_timesteps(..., strength)` gives; it belongs here beside the noise start.
"""

from __future__ import annotations

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animatediff.errors import InputError
from animatediff.sampling import initial_noise


def noise_start(
    scheduler: SchedulerMixin,
    shape: tuple[int, ...],
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """Noise (b, c, f, h, w) from `seed` (or `generator`), or the given unscaled `latents`, times the scheduler's
    initial sigma. The scheduler's timesteps must be set first (a sigma-based scheduler's initial sigma depends
    on them)."""
    if latents is None:
        latents = initial_noise(shape, seed, generator, device, dtype)
    elif tuple(latents.shape) != tuple(shape):
        raise InputError(f"latents of shape {tuple(latents.shape)} given for a clip of shape {tuple(shape)}")
    return latents.to(device, dtype) * scheduler.init_noise_sigma

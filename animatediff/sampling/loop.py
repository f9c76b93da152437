"""The denoising loop as a plain function: any scheduler, any noise predictor."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm


def initial_noise(
    shape: tuple[int, ...],
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One CPU `randn` of the whole latent shape: the sequence the official repo and diffusers draw."""
    if generator is None:
        generator = torch.Generator("cpu")
        if seed is not None:
            generator.manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def denoise(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    num_inference_steps: int,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run `scheduler` from pure noise `latents` (unscaled) for `num_inference_steps` steps.

    `callback(step, timestep, latents)` runs after every step (previews, timing, inspection).
    """
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    step_params = set(inspect.signature(scheduler.step).parameters)
    step_kwargs = {}
    if "eta" in step_params:
        step_kwargs["eta"] = 0.0
    if "generator" in step_params:
        step_kwargs["generator"] = generator
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress, leave=False)):
        eps = predict(scheduler.scale_model_input(latents, t), t)
        latents = scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        if callback is not None:
            callback(i, t, latents)
    return latents

"""The denoising loop as a plain function: any scheduler, any denoiser, over the timesteps it is given.

`sampling_timesteps` sets a scheduler's schedule and says which of its timesteps a run goes through: all of them
from pure noise, or, for a start that is already partly denoised (a noised video), the last `strength` of them.
`denoise` then runs exactly those, so a run can start and stop anywhere in the schedule.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from animatediff.errors import InputError

Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(x, t, text, frames) ↦ prediction: x (b, c, f, h, w) noisy latents at timestep t; text (b, tokens, dim) per
video or (b, f, tokens, dim) per frame; frames, the indices of x's f frames in the whole clip (a context window
passes its own), by which anything per-frame (text, control frames) picks its part."""
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x, t) ↦ prediction for the whole clip, text and guidance bound in (what `guided` returns)."""


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


def sampling_timesteps(
    scheduler: SchedulerMixin, num_inference_steps: int, strength: float = 1.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Set `scheduler` to `num_inference_steps` steps; return the timesteps a run goes through.

    `strength` 1 runs them all, from pure noise. Below 1 the run starts int(steps · strength) steps before the
    end, at the timestep a start noised that far must be denoised from (as diffusers' image- and video-to-video
    pipelines count it)."""
    if num_inference_steps < 1:
        raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if not 0.0 < strength <= 1.0:
        raise InputError(f"strength must be in (0, 1], got {strength}")
    scheduler.set_timesteps(num_inference_steps, device=device)
    start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
    if start == 0:
        return scheduler.timesteps
    if start == num_inference_steps:
        raise InputError(f"strength {strength} leaves no step of {num_inference_steps} to run")
    begin = start * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:]


def step_kwargs(scheduler: SchedulerMixin, generator: torch.Generator | None = None) -> dict:
    """What `scheduler.step` takes beside the prediction, as diffusers' pipelines pass it: `generator`, from which a
    stochastic scheduler (euler-ancestral, DDPM, SDE-DPM++, LCM, TCD, DDIM at an eta above 0) draws its step noise,
    and `eta`: TCD's `gamma` or DDIM's `eta` from its config (`make_scheduler`), else 0 (deterministic DDIM, as the
    official code samples, and diffusers' pipelines' default)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict = {}
    if "eta" in params:
        kwargs["eta"] = float(scheduler.config.get("gamma", scheduler.config.get("eta", 0.0)))
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def seed_brownian_noise(scheduler: SchedulerMixin, generator: torch.Generator | None) -> None:
    """A scheduler that draws its step noise from a Brownian tree (`DPMSolverSDEScheduler`, dpm++-sde) takes a new
    tree seeded from `generator`, so that the run's seed fixes it as it fixes the other schedulers' step noise; a
    `noise_sampler_seed` in its config stays, and without a generator the tree is seeded at random, as diffusers'."""
    if not hasattr(scheduler, "noise_sampler_seed"):
        return
    scheduler.noise_sampler = None
    if scheduler.config.get("noise_sampler_seed") is not None:
        scheduler.noise_sampler_seed = scheduler.config.noise_sampler_seed
    elif generator is not None:
        scheduler.noise_sampler_seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    else:
        scheduler.noise_sampler_seed = None


@contextmanager
def brownian_bounds_quiet() -> Iterator[None]:
    """torchsde's warning, silenced, when a float32 sigma lands a rounding error outside its tree's float64 bounds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Should have t[ab][<>]=t[01]", UserWarning)
        yield


def denoise(
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    blend: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Step `scheduler` through `timesteps` (from `sampling_timesteps`, or a slice of them), starting from
    `latents` at the first one's noise level.

    `blend(step, latents)`: what the loop goes on from after each step (video inpainting keeps part of a video:
    `pipeline/video_mask.py`). `callback(step, timestep, latents)` runs after every step (previews, timing,
    inspection).
    """
    kwargs = step_kwargs(scheduler, generator)
    seed_brownian_noise(scheduler, generator)
    with brownian_bounds_quiet():
        for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
            prediction = denoiser(scheduler.scale_model_input(latents, t), t)
            latents = scheduler.step(prediction, t, latents, **kwargs, return_dict=False)[0]
            if blend is not None:
                latents = blend(i, latents)
            if callback is not None:
                callback(i, t, latents)
    return latents

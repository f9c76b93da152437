"""Noise schedulers by name, with the official AnimateDiff inference settings as the base config.

The official code builds `DDIMScheduler(**inference_config)` fresh — linear betas 0.00085→0.012 (AnimateDiff's
"linear" is ComfyUI's "sqrt_linear"), steps_offset 1, clip_sample False — rather than inheriting the base
model's scheduler config, so every scheduler here starts from those values too.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animatediff.errors import InputError

OFFICIAL_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "steps_offset": 1,
    "clip_sample": False,
}

# name → (class, extra config). Names follow what users type in the A1111/ComfyUI UIs, lower-cased.
SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict]] = {
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-ancestral": (EulerAncestralDiscreteScheduler, {}),
    "dpm++-2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-2m-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++-2m-sde-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": (UniPCMultistepScheduler, {}),
    "lcm": (LCMScheduler, {}),
}
ALIASES = {
    "euler_a": "euler-ancestral",
    "euler-a": "euler-ancestral",
    "dpm++2m": "dpm++-2m",
    "dpmpp_2m": "dpm++-2m",
    "dpm++-2m karras": "dpm++-2m-karras",
    "dpm++2m-karras": "dpm++-2m-karras",
    "dpmpp_2m_karras": "dpm++-2m-karras",
}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def make_scheduler(name: str = "ddim", **overrides) -> SchedulerMixin:
    """A diffusers scheduler by name, on the official AnimateDiff betas; `overrides` change its config."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    cls, extra = SCHEDULERS[key]
    config = {**OFFICIAL_SCHEDULER_CONFIG, **extra, **overrides}
    if cls is not DDIMScheduler and cls is not DDPMScheduler and cls is not LCMScheduler:
        config.pop("clip_sample")
    return cls(**config)


def model_noise_settings(prediction_type: str = "epsilon", zero_snr: bool = False) -> dict:
    """What sampling must take from how a base model was trained (`BaseTraits`), rather than from the official
    inference config: its prediction type, and whether its schedule was rescaled to zero terminal SNR (Lin et al.
    2024; such a model is sampled from the last timestep on, with "trailing" spacing)."""
    settings: dict = {"prediction_type": prediction_type}
    if zero_snr:
        settings |= {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
    return settings


def denoising_target(
    scheduler: SchedulerMixin, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What a model trained on `scheduler` predicts for `latents` noised with `noise` at `timesteps`: the noise
    (epsilon) or the velocity (v_prediction)."""
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind != "epsilon":
        raise InputError(f"unsupported prediction type {kind!r}; use epsilon or v_prediction")
    return noise


def for_model(scheduler: SchedulerMixin, settings: dict) -> SchedulerMixin:
    """`scheduler` with a model's noise settings (`model_noise_settings`): itself when it has them already."""
    if all(scheduler.config.get(k) == v for k, v in settings.items()):
        return scheduler
    accepted = inspect.signature(type(scheduler).__init__).parameters
    missing = [k for k in settings if k not in accepted]
    if missing:
        raise InputError(
            f"the {type(scheduler).__name__} scheduler cannot sample this model ({', '.join(missing)}); "
            "pick another one, e.g. ddim or euler"
        )
    return type(scheduler).from_config(scheduler.config, **settings)

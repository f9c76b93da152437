"""Noise schedulers by name, with the official AnimateDiff inference settings as the base config.

The official code builds `DDIMScheduler(**inference_config)` fresh — linear betas 0.00085→0.012 (AnimateDiff's
"linear" is ComfyUI's "sqrt_linear"), steps_offset 1, clip_sample False — rather than inheriting the base
model's scheduler config, so every scheduler here starts from those values too.

Few-step sampling (`presets.py`) picks among them with two more settings: the timestep spacing (`leading`,
`trailing`, `linspace`: how the steps are spread over the 1000 training timesteps; AnimateDiff-Lightning samples
with `trailing`), and TCD's `gamma` (its stochasticity, the `eta` of diffusers' TCD step; 0.3 as diffusers'
docs recommend), kept in the scheduler's config so that the loop (`loop.step_kwargs`) passes it to every step.
DDIM's `eta` (A1111's "Eta for DDIM"; 0, deterministic, as the official code samples) is kept there so too.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    TCDScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import is_torchsde_available

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
    "euler-karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpm2": (KDPM2DiscreteScheduler, {}),
    "dpm2-karras": (KDPM2DiscreteScheduler, {"use_karras_sigmas": True}),
    "dpm2-ancestral": (KDPM2AncestralDiscreteScheduler, {}),
    "dpm2-ancestral-karras": (KDPM2AncestralDiscreteScheduler, {"use_karras_sigmas": True}),
    "dpm++-2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-2m-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++-2m-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpm++-2m-sde-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++-sde": (DPMSolverSDEScheduler, {}),
    "dpm++-sde-karras": (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    "unipc": (UniPCMultistepScheduler, {}),
    "deis": (DEISMultistepScheduler, {}),
    "lcm": (LCMScheduler, {}),
    "tcd": (TCDScheduler, {}),
}
ALIASES = {
    "euler_a": "euler-ancestral",
    "euler-a": "euler-ancestral",
    "dpm++2m": "dpm++-2m",
    "dpmpp_2m": "dpm++-2m",
    "dpm++-2m karras": "dpm++-2m-karras",
    "dpm++2m-karras": "dpm++-2m-karras",
    "dpmpp_2m_karras": "dpm++-2m-karras",
    "k_dpmpp_2m": "dpm++-2m-karras",  # animatediff-cli(-prompt-travel)'s names: k_ = Karras sigmas
    "k_dpmpp_2m_sde": "dpm++-2m-sde-karras",
    "k_dpmpp_sde": "dpm++-sde-karras",  # animatediff-cli-prompt-travel's default
    "dpmpp_sde": "dpm++-sde",
    "dpmpp_sde_karras": "dpm++-sde-karras",
    "dpm++ sde karras": "dpm++-sde-karras",  # A1111's "DPM++ SDE Karras", lower-cased
    "dpmpp_2m_sde": "dpm++-2m-sde",
    "k_euler": "euler-karras",
    "k_euler_a": "euler-ancestral",  # there as here: ancestral Euler has no Karras sigmas in diffusers
    "k_heun": "heun",
    "dpm_2": "dpm2",
    "k_dpm_2": "dpm2-karras",
    "dpm_2_a": "dpm2-ancestral",
    "k_dpm_2_a": "dpm2-ancestral-karras",
}


TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
"""How `set_timesteps` spreads n steps over the training timesteps (diffusers' `timestep_spacing`; Lin et al. 2024,
Table 2): `leading` 1, 1 + k, … (+ steps_offset) from the start, `trailing` from the last timestep (999) down,
`linspace` evenly from 0 to 999 inclusive."""
OWN_TIMESTEPS = ("lcm", "tcd")
"""Schedulers that take their steps from their own distillation schedule (`original_inference_steps`), not by a
timestep spacing."""
TCD_GAMMA = 0.3
"""TCD's default gamma (diffusers' `TCDScheduler.step(eta=0.3)`, the value its docs recommend)."""
NEEDS_TORCHSDE = ("dpm++-sde", "dpm++-sde-karras")
"""Schedulers whose step noise comes from a Brownian tree (diffusers' `DPMSolverSDEScheduler`, over torchsde): its
seed is drawn from the run's generator at the start of each loop (`loop.seed_brownian_noise`) unless the scheduler's
config fixes `noise_sampler_seed`."""


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def scheduler_key(name: str) -> str:
    """A scheduler's name as `SCHEDULERS` holds it (aliases and case resolved); unknown: an input error naming the
    choices."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    if key in NEEDS_TORCHSDE and not is_torchsde_available():
        raise InputError(f"the {key} scheduler needs torchsde: pip install torchsde (or animatediff[sde])")
    return key


def check_timestep_spacing(spacing: str, scheduler: str | None = None) -> str:
    """`spacing` if it is one of `TIMESTEP_SPACINGS` (and `scheduler`, a name, spaces its steps by one), else an
    input error naming the choices."""
    if spacing not in TIMESTEP_SPACINGS:
        raise InputError(f"unknown timestep spacing {spacing!r}; choose one of: {', '.join(TIMESTEP_SPACINGS)}")
    if scheduler is not None and scheduler_key(scheduler) in OWN_TIMESTEPS:
        raise InputError(
            f"the {scheduler_key(scheduler)} scheduler takes its timesteps from its own distillation schedule; "
            "a timestep spacing does not apply to it"
        )
    return spacing


def check_tcd_gamma(gamma: object) -> float:
    """TCD's gamma as a float in [0, 1] (0: deterministic; 1: a fresh draw at every step), else an input error."""
    return _unit(gamma, "TCD gamma")


def check_ddim_eta(eta: object) -> float:
    """DDIM's eta as a float in [0, 1] (0: deterministic, as the official code samples; 1: as much fresh noise at
    each step as DDPM draws), else an input error."""
    return _unit(eta, "DDIM eta")


def _unit(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InputError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def set_ddim_eta(scheduler: SchedulerMixin, eta: object) -> SchedulerMixin:
    """`scheduler`, a DDIM one, with its eta (`check_ddim_eta`) kept in its config for the loop; an input error for
    another scheduler."""
    if not isinstance(scheduler, DDIMScheduler):
        raise InputError(f"eta is the ddim scheduler's setting; the {type(scheduler).__name__} has none")
    scheduler.register_to_config(eta=check_ddim_eta(eta))
    return scheduler


def make_scheduler(name: str = "ddim", **overrides) -> SchedulerMixin:
    """A diffusers scheduler by name, on the official AnimateDiff betas; `overrides` change its config.

    `timestep_spacing` is checked against `TIMESTEP_SPACINGS` (and refused for lcm and tcd, which ignore it);
    `gamma`, for tcd only, is TCD's stochasticity (`TCD_GAMMA` unless given), and `eta`, for ddim only, DDIM's (0
    unless given), kept in the config for the loop."""
    key = scheduler_key(name)
    cls, extra = SCHEDULERS[key]
    overrides = dict(overrides)
    if "timestep_spacing" in overrides:
        check_timestep_spacing(overrides["timestep_spacing"], key)
    gamma = overrides.pop("gamma", None)
    if gamma is not None and key != "tcd":
        raise InputError(f"gamma is the tcd scheduler's setting; the {key} scheduler has none")
    eta = overrides.pop("eta", None)
    if eta is not None and key != "ddim":
        raise InputError(f"eta is the ddim scheduler's setting; the {key} scheduler has none")
    config = {**OFFICIAL_SCHEDULER_CONFIG, **extra, **overrides}
    if "clip_sample" not in inspect.signature(cls.__init__).parameters:
        config.pop("clip_sample")
    scheduler = cls(**config)
    if key == "tcd":
        scheduler.register_to_config(gamma=TCD_GAMMA if gamma is None else check_tcd_gamma(gamma))
    if eta is not None:
        set_ddim_eta(scheduler, eta)
    return scheduler


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
    """`scheduler` with a model's noise settings (`model_noise_settings`): itself when it has them already. Config
    keys its class does not take (TCD's `gamma`, DDIM's `eta`) carry over."""
    if all(scheduler.config.get(k) == v for k, v in settings.items()):
        return scheduler
    accepted = inspect.signature(type(scheduler).__init__).parameters
    missing = [k for k in settings if k not in accepted]
    if missing:
        raise InputError(
            f"the {type(scheduler).__name__} scheduler cannot sample this model ({', '.join(missing)}); "
            "pick another one, e.g. ddim or euler"
        )
    own = {k: v for k, v in scheduler.config.items() if k in accepted or k.startswith("_")}
    kept = {k: v for k, v in scheduler.config.items() if k not in own}
    remade = type(scheduler).from_config(own, **settings)
    if kept:
        remade.register_to_config(**kept)
    return remade

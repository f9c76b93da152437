"""Few-step sampling presets: the scheduler, timestep spacing, steps and guidance that distilled motion modules are
sampled with, as their model cards prescribe, by name.

- AnimateDiff-Lightning (ByteDance, arXiv 2403.12706; huggingface.co/ByteDance/AnimateDiff-Lightning): 1-, 2-, 4- and
  8-step distilled motion modules, each sampled with as many steps of
  `EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing", beta_schedule="linear")` at guidance 1.
- AnimateLCM (Wang et al. 2024, arXiv 2402.00769; huggingface.co/wangfuyun/AnimateLCM): a motion module and an LCM
  LoRA for the image layers (`--lora AnimateLCM_sd15_t2v_lora.safetensors:0.8`), sampled with
  `LCMScheduler.from_config(config, beta_schedule="linear")`, 6 steps at guidance 2.0 in the card's example (1 to 2
  is the range LCM users keep to; `--guidance-scale 1.5` for less).
- TCD (Zheng et al. 2024, arXiv 2402.19159): diffusers' `TCDScheduler` at 4 steps, guidance 1 and gamma 0.3, for
  weights distilled for consistency sampling (a TCD or LCM LoRA, AnimateLCM).

Each setting a preset makes is taken over by the one given explicitly (`resolve_sampling`): `--preset
lightning-4step --steps 8` samples 8 steps of the preset's Euler. Without a preset, the defaults are the official
ones: DDIM, 25 steps, the base's own guidance, the scheduler's own spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.sampling.schedulers import (
    OWN_TIMESTEPS,
    check_ddim_eta,
    check_tcd_gamma,
    check_timestep_spacing,
    make_scheduler,
    scheduler_key,
)

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

DEFAULT_SCHEDULER = "ddim"
DEFAULT_STEPS = 25


@dataclass(frozen=True)
class SamplingPreset:
    """A named few-step recipe: what a model card says to sample its weights with."""

    name: str
    scheduler: str
    """A `schedulers.SCHEDULERS` name."""
    steps: int
    guidance_scale: float
    timestep_spacing: str | None = None
    """None: the scheduler's own (leading for ours)."""
    beta_schedule: str = "linear"
    """The card's `beta_schedule` (diffusers' "linear": AnimateDiff's betas 0.00085→0.012, as ours already are)."""
    tcd_gamma: float | None = None
    """TCD's gamma (tcd only)."""
    note: str = ""
    """What else the card asks for (the weights to load), shown in --help."""

    def describe(self) -> str:
        """One line: what the preset sets."""
        spacing = f", {self.timestep_spacing} spacing" if self.timestep_spacing else ""
        gamma = f", gamma {self.tcd_gamma:g}" if self.tcd_gamma is not None else ""
        sets = f"{self.scheduler}{spacing}{gamma}, {self.steps} steps, guidance {self.guidance_scale:g}"
        return f"{self.name}: {sets}" + (f" ({self.note})" if self.note else "")


def _lightning(steps: int) -> SamplingPreset:
    note = f"motion module animatediff_lightning_{steps}step_diffusers.safetensors"
    return SamplingPreset(f"lightning-{steps}step", "euler", steps, 1.0, "trailing", note=note)


PRESETS: dict[str, SamplingPreset] = {
    p.name: p
    for p in (
        *(_lightning(n) for n in (1, 2, 4, 8)),
        SamplingPreset(
            "animatelcm",
            "lcm",
            6,
            2.0,
            note="AnimateLCM_sd15_t2v.ckpt as the motion module, --lora AnimateLCM_sd15_t2v_lora.safetensors:0.8",
        ),
        SamplingPreset("tcd-4step", "tcd", 4, 1.0, tcd_gamma=0.3, note="TCD- or LCM-distilled weights"),
    )
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> SamplingPreset:
    """The preset of that name; unknown: an input error naming the presets."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Sampling:
    """A run's sampling settings, resolved from a preset and explicit values (`resolve_sampling`)."""

    scheduler: str = DEFAULT_SCHEDULER
    steps: int = DEFAULT_STEPS
    guidance_scale: float | None = None
    """None: the base's own."""
    timestep_spacing: str | None = None
    """None: the scheduler's own."""
    beta_schedule: str | None = None
    """None: ours (AnimateDiff's linear betas)."""
    tcd_gamma: float | None = None
    """None: `schedulers.TCD_GAMMA` (tcd only)."""
    ddim_eta: float | None = None
    """None: 0 (ddim only)."""

    def scheduler_overrides(self) -> dict:
        """The config `make_scheduler(self.scheduler, **overrides)` takes for these settings."""
        overrides: dict = {}
        if self.timestep_spacing is not None:
            overrides["timestep_spacing"] = self.timestep_spacing
        if self.beta_schedule is not None:
            overrides["beta_schedule"] = self.beta_schedule
        if self.tcd_gamma is not None:
            overrides["gamma"] = self.tcd_gamma
        if self.ddim_eta is not None:
            overrides["eta"] = self.ddim_eta
        return overrides

    def make_scheduler(self) -> SchedulerMixin:
        """The scheduler these settings sample with (the base's noise settings are applied by the pipeline)."""
        return make_scheduler(self.scheduler, **self.scheduler_overrides())


def resolve_sampling(
    preset: str | None = None,
    scheduler: str | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    timestep_spacing: str | None = None,
    tcd_gamma: float | None = None,
    ddim_eta: float | None = None,
) -> Sampling:
    """The sampling settings of a preset (by name) with each explicitly given value taking over its own; checked,
    so that a bad value is an input error before any model loads.

    A preset's timestep spacing is kept for another explicit scheduler that spaces its steps (not for lcm or tcd);
    its TCD gamma only while the scheduler is tcd."""
    chosen = get_preset(preset) if preset else None
    name = scheduler_key(scheduler) if scheduler else chosen.scheduler if chosen else DEFAULT_SCHEDULER
    if timestep_spacing is not None:
        check_timestep_spacing(timestep_spacing, name)
    elif chosen is not None and name not in OWN_TIMESTEPS:
        timestep_spacing = chosen.timestep_spacing
    if tcd_gamma is not None:
        if name != "tcd":
            raise InputError(f"a TCD gamma is for the tcd scheduler; this run samples with {name}")
        tcd_gamma = check_tcd_gamma(tcd_gamma)
    elif chosen is not None and name == "tcd":
        tcd_gamma = chosen.tcd_gamma
    if ddim_eta is not None:
        if name != "ddim":
            raise InputError(f"a DDIM eta is for the ddim scheduler; this run samples with {name}")
        ddim_eta = check_ddim_eta(ddim_eta)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"steps must be a whole number of at least 1, got {steps!r}")
    return Sampling(
        scheduler=name,
        steps=steps if steps is not None else chosen.steps if chosen else DEFAULT_STEPS,
        guidance_scale=guidance_scale if guidance_scale is not None else chosen.guidance_scale if chosen else None,
        timestep_spacing=timestep_spacing,
        beta_schedule=chosen.beta_schedule if chosen else None,
        tcd_gamma=tcd_gamma,
        ddim_eta=ddim_eta,
    )


def presets_help() -> str:
    """The presets, one line each, for --help."""
    return "; ".join(p.describe() for p in PRESETS.values())

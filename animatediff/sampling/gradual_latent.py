"""Gradual latent hires fix: the first steps drawn on smaller latents, which grow to the clip's size as the run goes.

animatediff-cli-prompt-travel's `gradual_latent_hires_fix_map` (after kohya's "gradual latent"), for a clip larger
than the base model draws well: the composition and the motion settle at a size the model knows, the detail comes at
full size, and the small steps cost less. `GradualLatent.scales` maps a fraction of the run to the latents' scale from
there on, {0: 0.5, 0.7: 1}: half the height and width until 70 % of the steps, then the full size.

The loop (`gradual_denoise`), as prompt-travel's:

- the start (noise, or a noised video) is resized to the first scale's size: bicubic per frame, in float32;
- before the step at which the scale changes (step i of n, where (i + 1) / n reaches a new key), the latents and the
  step's prediction are resized to the new size, and sharpened by a 3 × 3 unsharp mask (0.05) on each channel;
- after that step, the run goes back `reverse_steps` steps (as many as it has run, at most), and the start's noise,
  resized, is added `noise_add_count` times by the scheduler's `add_noise`, at the timesteps of steps i + 1 … i + k
  (the last step's for any past the end); the steps gone back are run again at the new size, and a later step never
  goes back to a smaller scale.

A side is `int(side · scale)` latents rounded down to the UNet's downsampling (8 for SD: prompt-travel's `// 8 * 8`),
and the last scale must be 1: the clip ends at the size asked. At a change of size and again going back, a
scheduler's step history is restarted (`restart_history`: a multistep solver's earlier predictions, PNDM's,
dpm++-sde's noise tree); prompt-travel keeps them, which these schedulers cannot step with at another size. A
second-order scheduler (heun, dpm2, dpm++-sde) counts a step as its two evaluations and goes back whole steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from animatediff.errors import InputError
from animatediff.sampling.loop import Denoiser, brownian_bounds_quiet, seed_brownian_noise, step_kwargs

SHARPEN = 0.05
"""The unsharp mask's strength at a change of size (prompt-travel's)."""


@dataclass(frozen=True)
class GradualLatent:
    """The scales and the going back at each change (module docstring)."""

    scales: Mapping[float, float] = field(default_factory=lambda: {0.0: 0.5, 0.7: 1.0})
    """{fraction of the steps: the latents' scale from there on}; a key 0 and a last scale of 1."""
    reverse_steps: int = 5
    """Steps gone back at each change of size."""
    noise_add_count: int = 3
    """How many times the start's noise is added at each change."""

    def __post_init__(self) -> None:
        if not isinstance(self.scales, Mapping) or not self.scales:
            raise InputError(f"gradual latent scales must be a mapping {{fraction: scale}}, got {self.scales!r}")
        pairs = []
        for key, value in self.scales.items():
            fraction, scale = _number(key, "fraction"), _number(value, "scale")
            if not 0 <= fraction < 1:
                raise InputError(f"gradual latent fraction {key!r} must be in [0, 1)")
            if not 0 < scale <= 1:
                raise InputError(f"gradual latent scale {value!r} (at {key}) must be in (0, 1]")
            pairs.append((fraction, scale))
        pairs.sort()
        if pairs[0][0] != 0:
            raise InputError(f"gradual latent scales need a scale at 0 (the start), got keys {sorted(self.scales)}")
        if pairs[-1][1] != 1:
            raise InputError(f"the last gradual latent scale must be 1 (the clip's size), got {pairs[-1][1]}")
        object.__setattr__(self, "scales", dict(pairs))
        for name in ("reverse_steps", "noise_add_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"gradual latent {name} must be a whole number ≥ 0, got {value!r}")

    def scale_at(self, progress: float) -> float:
        """The scale at this fraction of the steps: the last key's at or before it."""
        return [scale for fraction, scale in self.scales.items() if fraction <= progress][-1]

    def steps_again(self, steps: int) -> int:
        """How many steps a run of `steps` goes through again (at most: scales that round to one size change
        nothing), for progress counts."""
        again, scale = 0, self.scale_at(0.0)
        for fraction, new in self.scales.items():
            if new != scale:
                changed_at = next((i for i in range(steps) if (i + 1) / steps >= fraction), steps - 1)
                again, scale = again + min(changed_at + 1, self.reverse_steps), new
        return again

    def sizes(self, size: tuple[int, int], multiple: int) -> list[tuple[int, int]]:
        """The latent sizes its scales give `size` (h, w), in order; refused where a side comes to nothing."""
        return [latent_size(size, scale, multiple) for scale in self.scales.values()]


def _number(value: object, what: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)  # a prompt-travel document's keys are strings: "0.7"
    except (TypeError, ValueError):
        raise InputError(f"gradual latent {what} {value!r} is not a number") from None


def latent_size(size: tuple[int, int], scale: float, multiple: int) -> tuple[int, int]:
    """(h, w) latents at `scale`, each side rounded down to `multiple`; refused where one comes to 0."""
    h, w = (int(side * scale) // multiple * multiple for side in size)
    if h == 0 or w == 0:
        raise InputError(
            f"gradual latent scale {scale} leaves no latents of {size[0]}×{size[1]} (sides are rounded down to "
            f"{multiple}); draw larger or use a larger scale"
        )
    return h, w


def resized(latents: torch.Tensor, size: tuple[int, int], sharpen: bool = False) -> torch.Tensor:
    """Latents (b, c, f, h, w) resized per frame to `size`, bicubic in float32, optionally unsharp-masked."""
    b, c, f = latents.shape[:3]
    if tuple(latents.shape[-2:]) == tuple(size):
        return latents
    frames = latents.float().transpose(1, 2).reshape(b * f, c, *latents.shape[-2:])
    frames = F.interpolate(frames, size=size, mode="bicubic", align_corners=False)
    if sharpen:
        k = SHARPEN
        kernel = torch.tensor([[0.0, -k, 0.0], [-k, 1 + 4 * k, -k], [0.0, -k, 0.0]], device=frames.device)
        frames = F.conv2d(frames, kernel.expand(c, 1, 3, 3), padding=1, groups=c)
    return frames.reshape(b, f, c, *size).transpose(1, 2).to(latents.dtype)


def weights_at(weights: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel weights (n, frames, h, w: regions', a video mask's) at latents of `size`: `resized` as the latents
    are, without sharpening (prompt-travel resizes its masks so)."""
    return weights if tuple(weights.shape[-2:]) == tuple(size) else resized(weights[:, None], size)[:, 0]


def restart_history(scheduler: SchedulerMixin) -> None:
    """Forget what a scheduler keeps from earlier steps (module docstring), so its next step is a first one."""
    if getattr(scheduler, "model_outputs", None) is not None:  # dpm++ 2m, unipc, deis
        scheduler.model_outputs = [None] * len(scheduler.model_outputs)
        scheduler.lower_order_nums = 0
    if hasattr(scheduler, "last_sample"):  # unipc's corrector
        scheduler.last_sample = None
    if hasattr(scheduler, "ets"):  # pndm
        scheduler.ets, scheduler.counter, scheduler.cur_sample = [], 0, None
    if hasattr(scheduler, "noise_sampler"):  # dpm++-sde: a Brownian tree of the old size, made anew from its seed
        scheduler.noise_sampler = None


def gradual_denoise(
    gradual: GradualLatent,
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    multiple: int,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    blend: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """`loop.denoise` with the latents growing by `gradual`'s scales (module docstring): `latents` and `noise`
    (the start's, by which `add_noise` noised it, or the pure noise it is) at the clip's size; the final latents
    at that size. `multiple`: the UNet's downsampling. `blend(step, latents)` after every step run, before any
    going back (it takes latents of any size: `weights_at`); `callback(step, t, latents)` after it."""
    full = tuple(latents.shape[-2:])
    order = scheduler.order  # timesteps per step
    n = len(timesteps) // order + (len(timesteps) % order > 0)
    kwargs = step_kwargs(scheduler, generator)
    seed_brownian_noise(scheduler, generator)
    size = latent_size(full, gradual.scale_at(0.0), multiple)
    latents = resized(latents, size)
    changes = len({latent_size(full, s, multiple) for s in gradual.scales.values()}) - 1
    bar = tqdm(total=len(timesteps) + changes * gradual.reverse_steps * order, desc="denoising", disable=not progress,
               leave=False)  # fmt: skip
    i = reached = 0  # the step run next (in timesteps), and the furthest reached
    grown = False  # the size changed in the step now running, which goes back once it is whole
    with brownian_bounds_quiet():  # dpm++-sde's tree, as in `loop.denoise`
        while i < len(timesteps):
            t = timesteps[i]
            if i % order == 0:  # a whole step's first (or only) evaluation
                target = latent_size(full, gradual.scale_at((reached // order + 1) / n), multiple)
            prediction = denoiser(scheduler.scale_model_input(latents, t), t)
            if target != size:
                prediction, latents = resized(prediction, target, True), resized(latents, target, True)
                size, grown = target, True
                restart_history(scheduler)  # what it kept is of the old size
            latents = scheduler.step(prediction, t, latents, **kwargs, return_dict=False)[0]
            if blend is not None:
                latents = blend(i, latents)
            if callback is not None:
                callback(i, t, latents)
            bar.update()
            i += 1
            reached = max(i, reached)
            if grown and i % order == 0:
                back = min(i // order, gradual.reverse_steps) * order
                restart_history(scheduler)  # what it kept is of a later step
                if getattr(scheduler, "_step_index", None) is not None:  # the schedulers that count their steps
                    scheduler._step_index -= back
                step_noise = resized(noise, size)
                for k in range(i, i + gradual.noise_add_count * order, order):
                    later = timesteps[min(k, len(timesteps) - 1)]
                    latents = scheduler.add_noise(latents, step_noise, later.reshape(1))
                i, grown = i - back, False
    bar.close()
    return latents

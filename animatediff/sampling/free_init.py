"""FreeInit (Wu et al. 2023, "FreeInit: Bridging Initialization Gap in Video Diffusion Models", arXiv:2312.07537):
the denoising loop rerun from better noise.

After a full run, the clean latents are diffused back to the last training timestep with the run's own initial
noise; a 3-D low-pass filter over (frames, height, width) keeps that video's low spatio-temporal frequencies and
fresh Gaussian noise fills the high ones; the loop then runs again from the result, `iterations` times in all.
With `fast_sampling` ("coarse-to-fine"), iteration i of n runs int(steps · (i + 1) / n) steps (at least one).

This follows the official code (github.com/TianxingWu/FreeInit, `freq_utils.py`) and diffusers'
`FreeInitMixin.enable_free_init(num_iters, use_fast_sampling, method, order, spatial_stop_frequency,
temporal_stop_frequency)`: the same filters, and the same random draws in the same order (the fresh noise comes
from the generator the start drew from, after it and after any step noise). Where the scheduler's initial sigma is
not 1 (Euler-type schedulers) it departs from diffusers, which re-noises with the already-scaled start and mixes in
unscaled fresh noise: here the start is unscaled first and the fresh noise scaled by the initial sigma, so the
re-initialised latents are at the noise level the loop expects. For an initial sigma of 1 (DDIM, DDPM, PNDM,
LCM, DPM-Solver, UniPC) that changes no bit.

The loop (`free_init_denoise`) wraps `denoise` and never looks inside the denoiser, so context windows, FreeNoise
or any other predictor wrapper compose with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fft as fft
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from animatediff.errors import InputError
from animatediff.sampling.loop import Denoiser, denoise, sampling_timesteps

FILTERS = ("butterworth", "gaussian", "ideal", "box")


@dataclass(frozen=True)
class FreeInit:
    """FreeInit's settings (diffusers' `enable_free_init` arguments, under shorter names)."""

    iterations: int = 3
    """Denoising runs in all (diffusers' `num_iters`); 1 is plain sampling."""
    filter: str = "butterworth"
    """The low-pass filter (diffusers' `method`): butterworth, gaussian, ideal, or box (the official code's
    box-shaped approximation of the ideal filter, which diffusers lacks)."""
    spatial_stop: float = 0.25
    """Normalized spatial stop frequency d_s in [0, 1] (diffusers' `spatial_stop_frequency`); 0 keeps nothing of
    the earlier run."""
    temporal_stop: float = 0.25
    """Normalized temporal stop frequency d_t in [0, 1] (diffusers' `temporal_stop_frequency`); 0 keeps nothing of
    the earlier run."""
    order: int = 4
    """The butterworth filter's order n: higher is closer to the ideal filter, lower to the gaussian."""
    fast_sampling: bool = False
    """Coarse-to-fine sampling (diffusers' `use_fast_sampling`): iteration i of n runs steps · (i + 1) / n steps."""

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise InputError(f"FreeInit iterations must be an integer of at least 1, got {self.iterations!r}")
        if self.filter not in FILTERS:
            raise InputError(f"FreeInit filter {self.filter!r} is not one of: {', '.join(FILTERS)}")
        for name in ("spatial_stop", "temporal_stop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise InputError(f"FreeInit {name} must be in [0, 1], got {value!r}")
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 1:
            raise InputError(f"FreeInit order must be an integer of at least 1, got {self.order!r}")

    def steps(self, num_inference_steps: int, iteration: int) -> int:
        """How many steps iteration `iteration` (from 0) runs: all of them, or with `fast_sampling`
        max(1, int(steps / iterations · (iteration + 1))), as diffusers counts them."""
        if not self.fast_sampling:
            return num_inference_steps
        return max(1, int(num_inference_steps / self.iterations * (iteration + 1)))

    def low_pass(self, shape: tuple[int, int, int], device: torch.device | str = "cpu") -> torch.Tensor:
        """This config's filter over (frames, height, width), float32."""
        if self.filter == "butterworth":
            mask = butterworth_filter(shape, self.spatial_stop, self.temporal_stop, self.order)
        elif self.filter == "gaussian":
            mask = gaussian_filter(shape, self.spatial_stop, self.temporal_stop)
        elif self.filter == "ideal":
            mask = ideal_filter(shape, self.spatial_stop, self.temporal_stop)
        else:
            mask = box_filter(shape, self.spatial_stop, self.temporal_stop)
        return mask.to(device)


def squared_frequency_distance(shape: tuple[int, int, int], spatial_stop: float, temporal_stop: float) -> torch.Tensor:
    """d²(t, h, w) = ((d_s / d_t)(2t/T − 1))² + (2h/H − 1)² + (2w/W − 1)² over the fftshift-ed (T, H, W) grid, in
    float64: each axis from −1 to 1, the zero frequency at 0 (even sizes), time stretched by d_s / d_t so that one
    spatial threshold stops both."""
    frames, height, width = shape
    t = torch.arange(frames, dtype=torch.float64)
    h = torch.arange(height, dtype=torch.float64)
    w = torch.arange(width, dtype=torch.float64)
    dt = ((spatial_stop / temporal_stop) * (2 * t / frames - 1)) ** 2
    dh = (2 * h / height - 1) ** 2
    dw = (2 * w / width - 1) ** 2
    return dt[:, None, None] + dh[None, :, None] + dw[None, None, :]


def butterworth_filter(
    shape: tuple[int, int, int], spatial_stop: float = 0.25, temporal_stop: float = 0.25, order: int = 4
) -> torch.Tensor:
    """Butterworth low pass 1 / (1 + (d² / d_s²)ⁿ) over (T, H, W), float32; all zeros if d_s or d_t is 0."""
    if spatial_stop == 0 or temporal_stop == 0:
        return torch.zeros(shape)
    d2 = squared_frequency_distance(shape, spatial_stop, temporal_stop)
    return (1 / (1 + (d2 / spatial_stop**2) ** order)).float()


def gaussian_filter(
    shape: tuple[int, int, int], spatial_stop: float = 0.25, temporal_stop: float = 0.25
) -> torch.Tensor:
    """Gaussian low pass exp(−d² / (2 d_s²)) over (T, H, W), float32; all zeros if d_s or d_t is 0."""
    if spatial_stop == 0 or temporal_stop == 0:
        return torch.zeros(shape)
    d2 = squared_frequency_distance(shape, spatial_stop, temporal_stop)
    return torch.exp(-1 / (2 * spatial_stop**2) * d2).float()


def ideal_filter(shape: tuple[int, int, int], spatial_stop: float = 0.25, temporal_stop: float = 0.25) -> torch.Tensor:
    """Ideal low pass: 1 where d² ≤ 2 d_s (the official code's threshold, kept as is), else 0, over (T, H, W),
    float32; all zeros if d_s or d_t is 0."""
    if spatial_stop == 0 or temporal_stop == 0:
        return torch.zeros(shape)
    d2 = squared_frequency_distance(shape, spatial_stop, temporal_stop)
    return (d2 <= spatial_stop * 2).float()


def box_filter(shape: tuple[int, int, int], spatial_stop: float = 0.25, temporal_stop: float = 0.25) -> torch.Tensor:
    """The official code's box approximation of the ideal filter: 1 on the fftshift-ed indices [c − r, c + r) of
    each axis around its centre c = size // 2, with r = round(H // 2 · d_s) for height and width and
    round(T // 2 · d_t) for time (Python's rounding), else 0, float32; all zeros if d_s or d_t is 0."""
    frames, height, width = shape
    mask = torch.zeros(shape)
    if spatial_stop == 0 or temporal_stop == 0:
        return mask
    rs = round(int(height // 2) * spatial_stop)
    rt = round(frames // 2 * temporal_stop)
    cf, ch, cw = frames // 2, height // 2, width // 2
    mask[cf - rt : cf + rt, ch - rs : ch + rs, cw - rs : cw + rs] = 1.0
    return mask


def mix_frequencies(x: torch.Tensor, noise: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """x's low frequencies and noise's high ones over the last three axes (frames, height, width):
    IFFT(LPF · FFT(x) + (1 − LPF) · FFT(noise)), the spectra fftshift-ed so `low_pass` has its zero frequency at
    the centre. Real part, in x's dtype promoted with the filter's (float32 for float32 inputs)."""
    dims = (-3, -2, -1)
    x_freq = fft.fftshift(fft.fftn(x, dim=dims), dim=dims)
    noise_freq = fft.fftshift(fft.fftn(noise, dim=dims), dim=dims)
    mixed = x_freq * low_pass + noise_freq * (1 - low_pass)
    return fft.ifftn(fft.ifftshift(mixed, dim=dims), dim=dims).real


def reinitialize(
    latents: torch.Tensor,
    noise: torch.Tensor,
    scheduler: SchedulerMixin,
    low_pass: torch.Tensor,
    generator: torch.Generator | None = None,
    timestep: int | None = None,
) -> torch.Tensor:
    """FreeInit's noise re-initialisation: denoised `latents` (b, c, f, h, w) diffused with the run's unscaled
    initial `noise` to `timestep` (default: the last training timestep, as the official code and diffusers do),
    its low frequencies kept (`low_pass`, (f, h, w)) and its high ones replaced by fresh noise: one float32
    `randn` of the latents' shape on `generator`'s device (the CPU's global one without it), times the scheduler's
    initial sigma. Returns the next run's start, in the latents' dtype."""
    if timestep is None:
        timestep = scheduler.config.num_train_timesteps - 1
    timesteps = torch.full((latents.shape[0],), timestep).long().to(latents.device)
    z_t = scheduler.add_noise(latents, noise.to(latents), timesteps).to(torch.float32)
    draw_on = generator.device if generator is not None else "cpu"
    z_rand = torch.randn(latents.shape, generator=generator, device=draw_on, dtype=torch.float32).to(latents.device)
    z_rand = z_rand * scheduler.init_noise_sigma
    return mix_frequencies(z_t, z_rand, low_pass.to(latents.device)).to(latents.dtype)


def free_init_denoise(
    config: FreeInit,
    denoiser: Denoiser,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    num_inference_steps: int,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    noise: torch.Tensor | None = None,
    schedule: Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """`denoise` run `config.iterations` times from a pure-noise start `latents` (already times the scheduler's
    initial sigma), each later run from `reinitialize` of the one before.

    `generator`: the one the start was drawn from, so the fresh noise continues its sequence (and the steps of a
    stochastic scheduler draw from it too, as in diffusers). `noise`: the start's unscaled noise (default:
    `latents` / initial sigma). `schedule(steps)`: sets the scheduler and returns the timesteps a run of that many
    steps goes through (default: `sampling_timesteps`); it is called before every run, which also resets the
    scheduler's state. `callback(step, timestep, latents)` runs after every step of every run, `step` counting
    from 0 in each. The progress bar of run i of n reads "FreeInit i/n".
    """
    if not isinstance(config, FreeInit):
        raise InputError(f"free_init must be a FreeInit or None, got {config!r}")
    if schedule is None:

        def schedule(steps: int) -> torch.Tensor:
            return sampling_timesteps(scheduler, steps, device=latents.device)

    if noise is None:
        noise = latents / scheduler.init_noise_sigma
    low_pass = config.low_pass(tuple(latents.shape[-3:]), latents.device)
    for iteration in range(config.iterations):
        if iteration > 0:
            latents = reinitialize(latents, noise, scheduler, low_pass, generator)
        timesteps = schedule(config.steps(num_inference_steps, iteration))
        desc = f"FreeInit {iteration + 1}/{config.iterations}"
        with tqdm(total=len(timesteps), desc=desc, disable=not progress, leave=False) as bar:
            latents = denoise(denoiser, scheduler, latents, timesteps, generator, False, _stepped(bar.update, callback))
    return latents


def _stepped(
    update: Callable[[], object], callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None
) -> Callable[[int, torch.Tensor, torch.Tensor], None]:
    def after_step(step: int, t: torch.Tensor, latents: torch.Tensor) -> None:
        update()
        if callback is not None:
            callback(step, t, latents)

    return after_step


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with `seed` (unseeded: torch's fixed default seed), the one `initial_noise` makes for
    a seed; a pipeline hands it to both the start and FreeInit so the fresh noise follows the start's."""
    generator = torch.Generator("cpu")
    if seed is not None:
        generator.manual_seed(seed)
    return generator

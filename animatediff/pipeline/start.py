"""The start of a run: the latents the loop begins from, at the noise level of its first timestep.

Pure noise for text-to-animation (one CPU `randn` of the whole clip, the draw the official repo and diffusers make,
scaled to the scheduler's initial sigma). A start from a video (video-to-video) is the video's latents noised to the
first timestep `sampling_timesteps(..., strength)` gives; it belongs here beside the noise start.

FreeNoise's start (`free_noise_start`) reschedules the noise so that frames past the first window reuse earlier
frames' noise (Qiu et al. 2023, arXiv 2310.15169, Sec. 3.2), drawn as diffusers' `_prepare_latents_free_noise`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animatediff.errors import InputError
from animatediff.pipeline.free_noise import FreeNoise
from animatediff.pipeline.video_start import VideoClip, video_start
from animatediff.sampling import initial_noise, sampling_timesteps

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline


def call_start(
    pipe: AnimationPipeline, shape: tuple[int, ...], num_inference_steps: int, seed: int | None,
    generator: torch.Generator, latents: torch.Tensor | None, clip: VideoClip | None, free_noise: FreeNoise | None,
    decode_chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
    """A call's (timesteps, start latents, the video's clean latents, the noise they were noised with): with a
    video, its latents noised to its strength's first timestep (`video_start`); under FreeNoise, its rescheduled
    noise; else pure noise from one CPU randn. The last two are None without a video."""
    if clip is not None:
        return video_start(pipe.vae, pipe.scheduler, clip, num_inference_steps, shape[0], generator, pipe.device,
                           pipe.dtype, decode_chunk_size)  # fmt: skip
    timesteps = sampling_timesteps(pipe.scheduler, num_inference_steps, device=pipe.device)
    if free_noise is not None:
        latents = free_noise_start(pipe.scheduler, shape, free_noise, seed, generator, pipe.device, pipe.dtype, latents)
    else:
        latents = noise_start(pipe.scheduler, shape, seed, generator, pipe.device, pipe.dtype, latents)
    return timesteps, latents, None, None


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


def free_noise_start(
    scheduler: SchedulerMixin,
    shape: tuple[int, ...],
    free_noise: FreeNoise,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """FreeNoise's start noise (b, c, f, h, w) times the scheduler's initial sigma.

    Drawn as diffusers draws it for the same seed or generator: one CPU `randn` of the whole clip (the plain
    start's draw), then, for 'shuffle_context', one `randperm` per stretch of frames past the first window from the
    same generator (`reschedule_noise`). 'repeat_context' draws the first window alone and repeats it (diffusers
    0.42 means to, but compares the context length with the string "repeat_context", so it draws and keeps noise
    for every frame). `latents`, unscaled, may be the whole clip's noise (used as it is, as diffusers does) or
    the first `context_length` frames' (rescheduled over the clip; not with 'random')."""
    if generator is None:
        generator = torch.Generator("cpu")
        if seed is not None:
            generator.manual_seed(seed)
    num_frames = shape[2]
    window = (*shape[:2], min(free_noise.context_length, num_frames), *shape[3:])
    if latents is not None and tuple(latents.shape) == tuple(shape):
        return latents.to(device, dtype) * scheduler.init_noise_sigma
    if latents is not None:
        if tuple(latents.shape) != window or free_noise.noise_type == "random":
            first = "" if free_noise.noise_type == "random" else f" or the first window's {window}"
            given = tuple(latents.shape)
            raise InputError(f"latents of shape {given} given for FreeNoise: expected {tuple(shape)}{first}")
        noise = latents
    else:
        noise = initial_noise(window if free_noise.noise_type == "repeat_context" else shape, generator=generator)
    noise = reschedule_noise(noise, num_frames, free_noise, generator)
    return noise.to(device, dtype) * scheduler.init_noise_sigma


def reschedule_noise(
    noise: torch.Tensor, num_frames: int, free_noise: FreeNoise, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise (b, c, f₀, h, w) of the clip (f₀ = `num_frames`) or of its first window, made `num_frames` long.

    'shuffle_context', for i = L, L + S, … (L the context length, S the stride): frames [i, i + S) take the noise
    of frames [i − L, i − L + S) in an order drawn by `randperm` (cut at the clip's end), as diffusers does;
    'repeat_context': the first L frames, repeated; 'random': the noise as it is."""
    length, stride, kind = free_noise.context_length, free_noise.context_stride, free_noise.noise_type
    if kind == "random":
        return noise
    if kind == "repeat_context":
        window = noise[:, :, : min(length, num_frames)]
        return window.repeat(1, 1, -(-num_frames // window.shape[2]), 1, 1)[:, :, :num_frames]
    out = noise.new_zeros(*noise.shape[:2], num_frames, *noise.shape[3:])
    out[:, :, : noise.shape[2]] = noise
    for i in range(length, num_frames, stride):
        start, end = i - length, min(num_frames, i - length + stride)
        order = torch.arange(start, end)[torch.randperm(end - start, generator=generator)]
        stop = min(num_frames, i + end - start)
        out[:, :, i:stop] = out[:, :, order[: stop - i].to(out.device)]
    return out

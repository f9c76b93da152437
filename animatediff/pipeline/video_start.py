"""Video-to-video's start (SDEdit, Meng et al. 2022, arXiv 2108.01073, applied to a clip as diffusers'
`AnimateDiffVideoToVideoPipeline` does): the input video's latents noised to the first timestep the strength leaves,
and denoised from there.

`video_start` draws what diffusers' `prepare_latents` draws for the same generator and in the same order: the VAE
posterior of each video (one copy per prompt), `decode_chunk_size` frames per encoder call, sampled with the
generator, times the VAE's scaling factor; then one `randn` of the latents in diffusers' (b, f, c, h, w) layout,
added by the scheduler's `add_noise` at the first timestep of `sampling_timesteps(..., strength)`. The loop's steps
(a stochastic scheduler's noise) then draw from the same generator, so the same seed gives diffusers' frames.

Strength 1 runs every step, from the last timestep's noise level (on a zero-terminal-SNR base nothing of the video
is left there). FreeInit composes only at strength 1, where it does what diffusers does (the noised video is the
"initial noise" its later runs are diffused back with; where the initial sigma is not 1, with the departure
`sampling/free_init.py` describes). Below 1 it is refused: diffusers' video-to-video FreeInit applies the strength a
second time inside every iteration (for n steps at strength s the first run takes int(int(n·s)·s) steps of an
int(n·s)-step schedule, each later run fewer still: 5, 2, 1 for n = 20, s = 0.5), and FreeInit's re-noising to the
last timestep would wipe out the very video a partial strength keeps.

`check_video_options` and `check_strength` check a call's options (the command line calls them before any model
loads), `video_clip` reads and sizes its video, `check_video_keys` checks a prompt-config entry's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from animatediff.errors import InputError
from animatediff.io.video_input import VideoInput, video_frames
from animatediff.pipeline.image_start import ImageStart
from animatediff.sampling import FreeInit, sampling_timesteps

DEFAULT_STRENGTH = 0.8
"""A video start's strength when none is given: diffusers' video-to-video default."""


@dataclass(frozen=True)
class VideoLatents:
    """A video start given as its clean latents instead of frames (the hires fix's latent upscalers): (1, c, f, h, w),
    scaled by the VAE's scaling factor, as the pipeline's `output_type="latent"` gives them."""

    latents: torch.Tensor


@dataclass(frozen=True)
class VideoClip:
    """The video a start is made from, read and sized for the pipeline, and how much of it is re-drawn."""

    frames: np.ndarray | None
    """float32 (f, H, W, 3) in [0, 1] at the pipeline's height and width; None when the latents are given."""
    strength: float
    """In (0, 1]: the fraction of the steps run, from the timestep the video is noised to."""
    latents: torch.Tensor | None = None
    """The clip's clean latents (1, c, f, h, w), given instead of frames (`VideoLatents`)."""
    shares: tuple[np.ndarray, np.ndarray] | None = None
    """A start from pictures (`ImageStart`): each frame's share of the first picture and of the last; `frames` then
    holds the first picture's still clip and, with a last picture, its still clip after it."""


def check_strength(strength: float, num_inference_steps: int | None = None, option: str = "strength") -> float:
    """`strength` in (0, 1], and (given the steps) leaving at least one of them to run: int(steps · strength) ≥ 1."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 < strength <= 1.0:
        raise InputError(f"{option} must be in (0, 1], got {strength!r}")
    if num_inference_steps is not None and int(num_inference_steps * strength) < 1:
        least = 1 / num_inference_steps
        raise InputError(
            f"{option} {strength} leaves no step of {num_inference_steps} to run; give at least {least:g} or more steps"
        )
    return float(strength)


def check_video_options(
    video: object,
    strength: float | None,
    num_inference_steps: int | None = None,
    free_init: FreeInit | None = None,
    latents: torch.Tensor | None = None,
) -> float | None:
    """The strength a call runs its video start at (None without a video: a start from noise), after checking what
    goes with a video: `strength` only with one (None: `DEFAULT_STRENGTH`), no `latents` beside one, and FreeInit
    only at strength 1 (see the module docstring)."""
    if video is None:
        if strength is not None:
            raise InputError(f"strength {strength} needs a video to start from (video-to-video)")
        return None
    strength = check_strength(DEFAULT_STRENGTH if strength is None else strength, num_inference_steps)
    if latents is not None:
        raise InputError("give a video or latents to start from, not both")
    if free_init is not None and strength < 1.0:
        raise InputError(
            f"FreeInit re-noises each run to the last timestep, which a video start at strength {strength} never "
            "reaches; use strength 1 with FreeInit, or no FreeInit"
        )
    return strength


def video_clip(
    video: VideoInput | None,
    strength: float | None,
    num_frames: int,
    height: int,
    width: int,
    video_stride: int = 1,
    num_inference_steps: int | None = None,
    free_init: FreeInit | None = None,
    latents: torch.Tensor | None = None,
) -> VideoClip | None:
    """The checked, read and sized clip of a call's `video` (None without one): `num_frames` frames every
    `video_stride`-th, fitted to height × width (`io.video_input.video_frames`)."""
    strength = check_video_options(video, strength, num_inference_steps, free_init, latents)
    if strength is None:
        return None
    if isinstance(video, VideoLatents):
        if tuple(video.latents.shape[2:3]) != (num_frames,) or video.latents.shape[0] != 1:
            raise InputError(f"video latents {tuple(video.latents.shape)}: expected one video of {num_frames} frames")
        return VideoClip(None, strength, video.latents)
    if isinstance(video, ImageStart):  # still clips of its pictures, let go to noise by their shares
        stills = np.repeat(video.pictures(height, width), num_frames, axis=0)
        return VideoClip(stills, strength, shares=video.shares(num_frames))
    return VideoClip(video_frames(video, num_frames, height, width, video_stride), strength)


@torch.no_grad()
def encode_video(
    vae: AutoencoderKL,
    frames: np.ndarray,
    copies: int = 1,
    generator: torch.Generator | None = None,
    chunk_size: int = 16,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frames (f, H, W, 3) in [0, 1] → `copies` samples of their VAE posterior, times the scaling factor, as
    (copies, f, c, h, w) in `dtype`. The encoder runs once, on `chunk_size` frames at a time; the samples are drawn
    copy by copy and chunk by chunk, the order diffusers encodes a batch of `copies` equal videos in."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1
    pixels = pixels.to(device=device, dtype=vae.dtype)
    posteriors = [vae.encode(chunk).latent_dist for chunk in pixels.split(chunk_size)]
    videos = [torch.cat([p.sample(generator) for p in posteriors]) for _ in range(copies)]
    return torch.stack(videos).to(dtype) * vae.config.scaling_factor


def video_start(
    vae: AutoencoderKL,
    scheduler: SchedulerMixin,
    clip: VideoClip,
    num_inference_steps: int,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    chunk_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(timesteps, latents, clean, noise): the timesteps a run at the clip's strength goes through
    (`sampling_timesteps`, which sets the scheduler), and the clip's latents (batch_size, c, f, h, w) noised to the
    first of them, drawn as diffusers' video-to-video pipeline draws them (module docstring); the clean latents and
    the noise added to them, in the same layout (what `pipeline/video_mask.py` keeps)."""
    timesteps = sampling_timesteps(scheduler, num_inference_steps, clip.strength, device=device)
    if clip.latents is None:
        clean = encode_video(vae, clip.frames, batch_size, generator, chunk_size, device, dtype)
    else:  # given: (1, c, f, h, w) → diffusers' (b, f, c, h, w)
        clean = clip.latents.to(device, dtype).permute(0, 2, 1, 3, 4).expand(batch_size, -1, -1, -1, -1)
    if clip.shares is not None:
        clean = _let_go(clean, clip.shares, generator)
    noise = randn_tensor(clean.shape, generator=generator, device=torch.device(device), dtype=dtype)
    first = timesteps[:1].repeat(batch_size)
    latents = scheduler.add_noise(clean, noise, first).permute(0, 2, 1, 3, 4)
    return timesteps, latents, clean.permute(0, 2, 1, 3, 4), noise.permute(0, 2, 1, 3, 4)


def _let_go(
    stills: torch.Tensor, shares: tuple[np.ndarray, np.ndarray], generator: torch.Generator | None
) -> torch.Tensor:
    """An image start's clean clip (b, f, c, h, w) from its pictures' still clips (b, f or 2f, c, h, w): each frame
    its shares of them, the rest latent noise from `generator`, drawn only where some frame has a rest
    (`pipeline/image_start.py`)."""
    f = len(shares[0])
    first, last = (torch.as_tensor(s, dtype=stills.dtype, device=stills.device)[:, None, None, None] for s in shares)
    clean = first * stills[:, :f] + (last * stills[:, f:] if stills.shape[1] > f else 0)
    rest = 1 - first - last
    if bool((rest > 1e-6).any()):
        clean = clean + rest * randn_tensor(clean.shape, generator=generator, device=stills.device, dtype=stills.dtype)
    return clean


def check_video_keys(values: dict, where: str) -> None:
    """A prompt-config entry's video-to-video keys (`video`, `strength`, `video_stride`, `video_mask`), checked in
    place: strength only with a video or a picture to start from (`init_image`), stride and mask only with a video,
    paths, and values in range (`where` names the entry in errors)."""
    if not values.get("video"):
        needing = ["video_stride", "video_mask"] + ["strength"] * (not values.get("init_image"))
        for key in needing:
            if values.get(key) is not None:
                raise InputError(f"{where}: {key} needs a video to start from (the 'video' key)")
        values.pop("video", None)
    else:
        for key in ("video", "video_mask"):
            if not isinstance(values.get(key, ""), str):
                raise InputError(f"{where}: {key} must be a path, got {values[key]!r}")
        stride = values.setdefault("video_stride", 1)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise InputError(f"{where}: video_stride must be an integer of at least 1, got {stride!r}")
    if values.get("strength") is not None:
        steps = values.get("steps") if isinstance(values.get("steps"), int) else None
        try:
            check_strength(values["strength"], steps)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None

"""Video inpainting: with `video_mask` beside a video start, only where the mask is white is the clip drawn anew;
where it is black the input video is kept.

After every step the kept part of the latents is replaced by the video's own latents noised, with the start's noise,
to the level of the next step, and by the clean latents after the last step: what diffusers' inpainting pipelines do
with a UNet of 4 input channels, ComfyUI's "Set Latent Noise Mask" and animatediff-cli-prompt-travel's `is_init_img`
regions. The motion module sees the whole clip at every step, so the drawn part moves with the kept one.

The mask is one of the forms a region's mask takes (`pipeline/regions.py`: an image for every frame, a folder of
images named by their frame, an array, {frame: image}), fitted to the latents as a region's is: white where it is at
least half white, taken to the latent size by nearest neighbour. A frame before the mask's first keyframe is kept
whole. On the gradual latent hires fix's smaller latents the mask and the video are resized to them, bicubic
(`sampling.gradual_latent.weights_at`, as prompt-travel resizes its masks and its start).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animatediff.errors import InputError
from animatediff.pipeline.masks import MaskSource, fitted_masks, mask_frames
from animatediff.sampling import FreeInit
from animatediff.sampling.gradual_latent import resized, weights_at

Blend = Callable[[int, torch.Tensor], torch.Tensor]
"""(step index, the latents after that step) ↦ the latents the loop goes on from."""


def check_video_mask(
    mask: MaskSource | None, video: object, num_frames: int, free_init: FreeInit | None, regions: bool = False
) -> None:
    """One line for a mask without a video, a mask or `regions` keeping the video beside FreeInit, a mask that is
    not found or not an image."""
    if (mask is not None or regions) and free_init is not None:
        what = "video_mask" if mask is not None else "a region keeping the video"
        raise InputError(f"{what} keeps the video at every step, which FreeInit's re-noised runs would not; use one")
    from animatediff.pipeline.image_start import ImageStart

    if isinstance(video, ImageStart) and (mask is not None or regions):
        raise InputError("a start from a picture has no video to keep: video_mask and kept regions need a video")
    if mask is None:
        return
    if video is None:
        raise InputError("video_mask needs a video to keep (video-to-video)")
    mask_frames(mask, num_frames, "video")


def kept_video(
    mask: MaskSource | None,
    clean: torch.Tensor,
    noise: torch.Tensor,
    scheduler: SchedulerMixin,
    timesteps: torch.Tensor,
    size: tuple[int, int],
    kept: torch.Tensor | None = None,
) -> Blend | None:
    """The loop's blend keeping the video where `mask` is black and where `kept` (frames, h, w; the regions keeping
    the video, `regions.kept_weight`) is 1 (None without either): `clean` and `noise` are the video start's latents
    and noise, (b, c, f, h, w); `size` the output's (height, width)."""
    if mask is None and kept is None:
        return None
    frames, latent = clean.shape[2], tuple(clean.shape[-2:])
    drawn = torch.ones(frames, *latent) if mask is None else fitted_masks(mask, frames, *size, latent, "video")
    drawn = drawn.to(clean.device, clean.dtype)
    drawn = drawn if kept is None else drawn * (1 - kept.to(drawn))

    def blend(i: int, latents: torch.Tensor) -> torch.Tensor:
        video = clean  # after the last step; before it, noised to the next step's level
        if i + 1 < len(timesteps):
            video = scheduler.add_noise(clean, noise, timesteps[i + 1 : i + 2].repeat(clean.shape[0]))
        size = tuple(latents.shape[-2:])  # smaller under the gradual latent hires fix: all resized to it
        weight = weights_at(drawn[None], size)[0]
        return latents * weight + resized(video, size).to(latents.dtype) * (1 - weight)

    return blend

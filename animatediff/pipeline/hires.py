"""Hires fix: a clip drawn at the size the model draws best, then drawn again larger from its upscaled frames.

A1111's "Hires. fix" and ComfyUI's upscale-and-resample, for animations: the first pass settles the composition and
the motion; its frames are upscaled by `scale` (in pixels, bilinear with antialiasing: `io.video_input.fit_frames`,
the fit every video start gets) and the second pass draws them again by video-to-video at `strength` (`video=`:
diffusers' AnimateDiffVideoToVideoPipeline on the upscaled frames), with the same prompts, seed and settings, for
`steps` steps (default: the first pass's). A strength around 0.5 keeps the first pass's motion and adds detail.

The latent upscalers (`upscaler` "latent", "latent-bicubic", "latent-nearest": A1111's "Latent", "Latent (bicubic)",
"Latent (nearest)") upscale the first pass's latents instead (torch's interpolate of each frame, no antialiasing) and
start the second pass from them (`VideoLatents`): no VAE decode and encode between the passes. They blur what the VAE
decodes at low strength; A1111 suggests a strength of 0.5 or more with them.

The second pass runs without FreeInit (its fresh noise would throw the first pass away), and draws its noise from
the seed (a `generator` or `latents` given to the first pass are its alone). ControlNets, keyframe ControlNets and
SparseCtrl steer it too, their images upscaled as the frames are (`sized_controls`): the second pass is then diffusers'
AnimateDiffVideoToVideoControlNetPipeline on the upscaled frames and control images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from animatediff.errors import InputError
from animatediff.io.video_input import fit_frames
from animatediff.pipeline.video_start import VideoLatents, check_strength

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline

FIRST_PASS_ONLY = (
    "video", "strength", "video_stride", "latents", "generator", "free_init", "output_type", "gradual_latent",
)  # fmt: skip
"""Call options the second pass does not take: its start is the upscaled frames, drawn from the seed."""
UPSCALERS = {"pixel": None, "latent": "bilinear", "latent-bicubic": "bicubic", "latent-nearest": "nearest"}
"""The upscalers: "pixel" (the frames, antialiased bilinear) or the latents by torch's interpolate mode."""


@dataclass(frozen=True)
class HiresFix:
    """The second pass (module docstring)."""

    scale: float = 1.5
    """How much larger the second pass draws, 1 to 4 (1: a second pass at the same size)."""
    strength: float = 0.5
    """How much of the upscaled frames is drawn again, in (0, 1] (as `--strength`)."""
    steps: int | None = None
    """The second pass's steps (of which `strength` runs); None: the first pass's."""
    upscaler: str = "pixel"
    """What is upscaled: the frames ("pixel") or the latents ("latent", "latent-bicubic", "latent-nearest")."""

    def __post_init__(self) -> None:
        number = (int, float)
        if isinstance(self.scale, bool) or not isinstance(self.scale, number) or not 1 <= self.scale <= 4:
            raise InputError(f"hires scale must be a number from 1 to 4, got {self.scale!r}")
        steps = self.steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise InputError(f"hires steps must be a whole number ≥ 1, got {steps!r}")
        check_strength(self.strength, steps, "hires strength")
        if self.upscaler not in UPSCALERS:
            raise InputError(f"hires upscaler {self.upscaler!r}: choose one of {', '.join(UPSCALERS)}")

    @property
    def latent(self) -> bool:
        """Whether the latents are upscaled (the first pass then returns its latents undecoded)."""
        return UPSCALERS[self.upscaler] is not None

    def second_steps(self, first: int) -> int:
        """The second pass's steps when the first runs `first`."""
        return self.steps or first

    def size(self, height: int, width: int, multiple: int = 8) -> tuple[int, int]:
        """(height, width) of the second pass: the first's times `scale`, rounded to a multiple of `multiple`."""
        return tuple(max(multiple, round(side * self.scale / multiple) * multiple) for side in (height, width))


def _fitted(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Control images (n, 3, h, w) as (n, H, W, 3) at `size`, fitted as the frames are."""
    return fit_frames(images.permute(0, 2, 3, 1).cpu().numpy(), *size)


def sized_controls(call: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """The call's `controlnets` and `sparse_ctrls` with their images fitted to `size` (height, width)."""
    from animatediff.pipeline.controlnet import ControlNet

    def keyframes(images: dict[int, torch.Tensor]) -> dict[int, np.ndarray]:
        return {frame: _fitted(image[None], size)[0] for frame, image in images.items()}

    controls = [
        replace(c, frames=_fitted(c.frames, size))
        if isinstance(c, ControlNet)
        else replace(c, keyframes=keyframes(c.keyframes))
        for c in call.get("controlnets") or ()
    ]
    sparse = [replace(c, keyframes=keyframes(c.keyframes)) for c in call.get("sparse_ctrls") or ()]
    return {"controlnets": controls, "sparse_ctrls": sparse}


def hires_fix(
    pipe: AnimationPipeline,
    first: np.ndarray,
    hires: HiresFix,
    prompt: str | list[str] | dict,
    negative_prompt: str | list[str] | dict | None = None,
    seed: int | None = None,
    **call: Any,
) -> np.ndarray:
    """The second pass over the first pass's frames `first` (videos, f, h, w, 3) of `pipe(prompt, negative_prompt,
    seed=seed, **call)` (with a latent upscaler its latents (videos, c, f, h, w), `output_type="latent"`): each video
    upscaled and drawn again with its own prompt; frames (videos, f, H, W, 3)."""
    f = pipe.vae_scale_factor
    if hires.latent:
        videos, _, frames, height, width = first.shape
        height, width = height * f, width * f
    else:
        videos, frames, height, width = first.shape[:4]
    size = hires.size(height, width, f)
    prompts = prompt if isinstance(prompt, list) else [prompt] * videos
    negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt] * videos
    steps = hires.second_steps(call.get("num_inference_steps", 25))  # 25: the pipeline's default
    second = {k: v for k, v in call.items() if k not in FIRST_PASS_ONLY}
    second.update(num_frames=frames, height=size[0], width=size[1], num_inference_steps=steps, strength=hires.strength)
    second.update(sized_controls(call, size))
    out = [
        pipe(p, n, seed=seed, video=_upscaled(video, size, hires, f), **second)[0]
        for p, n, video in zip(prompts, negatives, first, strict=True)
    ]
    return np.stack(out)


def _upscaled(
    video: np.ndarray | torch.Tensor, size: tuple[int, int], hires: HiresFix, factor: int
) -> np.ndarray | VideoLatents:
    """One video's frames (f, h, w, 3) fitted to `size`, or its latents (c, f, h, w) interpolated to `size` over the
    VAE's `factor`."""
    if not hires.latent:
        return fit_frames(video, *size)
    frames = video.transpose(0, 1)  # (f, c, h, w): each frame on its own
    latent = (size[0] // factor, size[1] // factor)
    upscaled = torch.nn.functional.interpolate(frames, size=latent, mode=UPSCALERS[hires.upscaler])
    return VideoLatents(upscaled.transpose(0, 1)[None])


def draw(
    pipe: AnimationPipeline,
    prompt: str | list[str] | dict,
    negative_prompt: str | list[str] | dict | None = None,
    seed: int | None = None,
    hires: HiresFix | None = None,
    **call: Any,
) -> np.ndarray:
    """`pipe(prompt, negative_prompt, seed=seed, **call)`, and where `hires` is given its second pass over that:
    what `generate`, `run` and the web app draw."""
    if hires is None:
        return pipe(prompt, negative_prompt, seed=seed, **call)
    first = pipe(prompt, negative_prompt, seed=seed, **call, output_type="latent" if hires.latent else "np")
    return hires_fix(pipe, first, hires, prompt, negative_prompt, seed, **call)


def check_hires_keys(values: dict, where: str) -> None:
    """A prompt-config entry's hires fix keys (`hires_scale`, `hires_strength`, `hires_steps`, `hires_upscaler`, as
    generate's flags),
    checked in place; an InputError starting with `where`."""
    if values.get("hires_scale") is None:
        given = [k for k in ("hires_strength", "hires_steps", "hires_upscaler") if values.get(k) is not None]
        if given:
            raise InputError(f"{where}: {given[0]} needs hires_scale")
        return
    try:
        steps = values.get("steps") if values.get("hires_steps") is None else values["hires_steps"]
        upscaler = values.get("hires_upscaler", HiresFix.upscaler)
        HiresFix(values["hires_scale"], values.get("hires_strength", HiresFix.strength), steps, upscaler)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None

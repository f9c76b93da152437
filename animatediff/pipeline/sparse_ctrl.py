"""SparseCtrl (`models/sparse_ctrl.py`) as a pipeline condition: a few keyframes steer the whole clip.

`SparseCtrl` says what to apply: an encoder, its keyframes {frame index: image}, a scale, the fraction of the steps
it acts in, guess mode. `pipe(..., sparse_ctrls=[...])` binds each to the run (`sparse_ctrl_conditions`): the
keyframe images become the condition (VAE latents of the images for the RGB model, whose condition embedding is
`simplified`; the images themselves for scribble and other image models), placed at their frames of a clip-long
condition whose other frames are zero, with a mask that is 1 on the keyframes. At every UNet call the bound
`SparseCtrlCondition` takes the condition and mask of the frames asked for (a context window holding a keyframe
gets it, one holding none gets an all-zero condition), runs the encoder on them with the UNet's own latents and
text, and hands the UNet its residuals.

This is what diffusers' `AnimateDiffSparseControlNetPipeline` computes (tests/test_sparse_ctrl_parity.py), with
two choices of ours: a keyframe image is encoded to the mean of the VAE's latent distribution, where diffusers
draws a sample from it with the global random generator (the mean is what a seed cannot change); and under guess
mode with guidance the unconditional half gets zero residuals, as ControlNets get here (`pipeline/controlnet.py`).
On latents of another size than the clip's (the gradual latent hires fix's smaller ones) the condition and the mask
are resized to them, bicubic (`sampling.gradual_latent.resized`), as ControlNets' images are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from animatediff.errors import InputError
from animatediff.formats.sparse_ctrl import check_sparse_ctrl
from animatediff.models.sparse_ctrl import SparseControlNet
from animatediff.pipeline.conditions import guidance_half
from animatediff.pipeline.control_inputs import check_control_range
from animatediff.pipeline.controlnet import active_steps, control_frames_tensor, unconditional_zeros
from animatediff.sampling.context import step_index
from animatediff.sampling.gradual_latent import resized

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline

logger = logging.getLogger(__name__)


@dataclass
class SparseCtrl:
    """A SparseCtrl encoder and the keyframes it steers a clip with (diffusers' argument names in brackets)."""

    model: SparseControlNet
    """The encoder (`formats.sparse_ctrl.load_sparse_ctrl`); moved to the pipeline's device when a call binds it."""
    keyframes: Mapping[int, object] = field(default_factory=dict)
    """{frame index: image} (`controlnet_frame_indices`, `conditioning_frames`): each image a (3, H, W) tensor or
    an (H, W, 3) array, floats in [0, 1] or uint8, at the output size. Kept as float32 (3, H, W) tensors."""
    scale: float = 1.0
    """How much of its residuals the UNet gets (`controlnet_conditioning_scale`); 0 switches it off."""
    start: float = 0.0
    """The fraction of the steps after which it starts acting (`control_guidance_start`), 0 … 1."""
    end: float = 1.0
    """The fraction of the steps after which it stops (`control_guidance_end`), start … 1."""
    guess_mode: bool = False
    """Guess mode: it sees the conditional half of the guided batch only, residuals scaled from 0.1 up to 1."""

    def __post_init__(self) -> None:
        check_control_range(self.start, self.end, self.scale)
        if not isinstance(self.model, SparseControlNet):
            raise InputError(
                f"SparseCtrl model must be an animatediff SparseControlNet (formats.sparse_ctrl.load_sparse_ctrl), "
                f"got {type(self.model).__name__}"
            )
        if not isinstance(self.keyframes, Mapping) or not self.keyframes:
            raise InputError("SparseCtrl needs keyframes: {frame index: image}, at least one")
        frames = {}
        for index, image in self.keyframes.items():
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise InputError(f"SparseCtrl keyframe index {index!r} is not a whole number")
            frames[int(index)] = control_frames_tensor(_as_batch(image))[0]
        self.keyframes = dict(sorted(frames.items()))


def _as_batch(image: object) -> object:
    if isinstance(image, np.ndarray) and image.ndim == 3:
        return image[None]
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        return image[None]
    raise InputError(f"a SparseCtrl keyframe must be one image, (3, H, W) or (H, W, 3), got {_shape(image)}")


def _shape(value: object) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def looks_like_colour(image: torch.Tensor) -> bool:
    """A picture rather than a scribble: more than 5 % of its pixels have channels apart by over 0.1."""
    spread = image.max(dim=0).values - image.min(dim=0).values
    return bool((spread > 0.1).float().mean() > 0.05)


class SparseCtrlCondition:
    """A `Condition`: one SparseCtrl encoder bound to a run (see the module docstring)."""

    def __init__(
        self, control: SparseCtrl, condition: torch.Tensor, mask: torch.Tensor, timesteps: torch.Tensor, guided: bool,
        factor: int | None = None,
    ) -> None:  # fmt: skip
        """`condition` (1, c, f, h, w) and `mask` (1, 1, f, h, w) over the whole clip; `timesteps`: the run's;
        `guided`: the batch holds [uncond, cond] videos; `factor`: the condition's size over the latents' (1 for a
        latent condition, the VAE's for images), by which both are fitted to latents of another size (None: never)."""
        self.factor = factor
        self.model = control.model
        self.scale = float(control.scale)
        self.guess_mode = control.guess_mode or bool(self.model.config.get("global_pool_conditions", False))
        self.guided = guided
        self.condition, self.mask = condition, mask
        self.step_of = step_index(timesteps)
        self.active = active_steps(len(timesteps), control.start, control.end)

    def half(self, negative: bool) -> SparseCtrlCondition | None:
        """This condition for one half of the guidance (`conditions.guidance_half`)."""
        return guidance_half(self, negative)

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        """The encoder's residuals for latents x (b, c, f, h, w) holding the clip's `frames`; nothing at a step it
        does not act in."""
        if self.scale == 0 or not self.active[self.step_of(t)]:
            return {}
        half = self.guess_mode and self.guided
        if half:
            x, text = x.chunk(2)[1], text.chunk(2)[1]
        videos = x.shape[0]
        index = frames.to(self.condition.device)
        condition, mask = self.condition[:, :, index], self.mask[:, :, index]
        if self.factor is not None:  # smaller latents under the gradual latent hires fix: both resized to them
            size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
            condition, mask = resized(condition, size), resized(mask, size)
        condition, mask = condition.expand(videos, -1, -1, -1, -1), mask.expand(videos, -1, -1, -1, -1)
        dtype = self.model.dtype
        down, mid = self.model(
            x.to(dtype), t, text.to(dtype), condition, mask, conditioning_scale=self.scale, guess_mode=self.guess_mode
        )
        down, mid = [d.to(x.dtype) for d in down], mid.to(x.dtype)
        if half:
            down, mid = unconditional_zeros(down, mid)
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}


@torch.no_grad()
def sparse_ctrl_conditions(
    controls: Sequence[SparseCtrl],
    pipe: AnimationPipeline,
    timesteps: torch.Tensor,
    num_frames: int,
    height: int,
    width: int,
    guided: bool,
) -> list[SparseCtrlCondition]:
    """`controls` bound to one call of `pipe`: checked against the base and the clip (keyframes within it, at the
    output size), each keyframe made a condition (VAE-encoded for latent models), each model moved to the device."""
    conditions = []
    for i, control in enumerate(controls, start=1):
        name = f"SparseCtrl {i}" if len(controls) > 1 else "SparseCtrl"
        if not isinstance(control, SparseCtrl):
            raise InputError(f"{name}: expected an animatediff.pipeline.sparse_ctrl.SparseCtrl, got {control!r}")
        model = control.model
        check_sparse_ctrl(model.config, pipe.unet.config, name)
        outside = [k for k in control.keyframes if not 0 <= k < num_frames]
        if outside:
            raise InputError(
                f"{name}: keyframe {outside[0]} is outside the clip of {num_frames} frames (0 … {num_frames - 1})"
            )
        images = torch.stack(list(control.keyframes.values()))
        if tuple(images.shape[2:]) != (height, width):
            raise InputError(
                f"{name}: keyframe images of {images.shape[3]}×{images.shape[2]} for an output of {width}×{height} "
                "(width × height); resize them to the output size"
            )
        config = model.sparse_config
        model.to(pipe.device)
        if config.takes_latents:
            vae = pipe.vae
            pixels = (images * 2 - 1).to(pipe.device, vae.dtype)
            encoded = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        else:
            if config.conditioning_channels == 3 and any(looks_like_colour(image) for image in images):
                logger.warning(
                    f"{name}: a keyframe is a colour picture, but this SparseCtrl takes scribbles or other line "
                    "images (white lines on black); it will read the picture as one"
                )
            encoded = images.to(pipe.device)
        if encoded.shape[1] != config.conditioning_channels:
            raise InputError(
                f"{name}: its condition has {config.conditioning_channels} channels, the keyframes give "
                f"{encoded.shape[1]}"
            )
        encoded = encoded.to(model.dtype)
        condition = encoded.new_zeros(1, encoded.shape[1], num_frames, *encoded.shape[2:])
        mask = encoded.new_zeros(1, 1, num_frames, *encoded.shape[2:])
        index = torch.tensor(list(control.keyframes), device=encoded.device)
        condition[0, :, index] = encoded.transpose(0, 1)
        mask[0, :, index] = 1
        factor = 1 if config.takes_latents else pipe.vae_scale_factor
        conditions.append(SparseCtrlCondition(control, condition, mask, timesteps, guided, factor))
    return conditions


__all__ = ["SparseCtrl", "SparseCtrlCondition", "looks_like_colour", "sparse_ctrl_conditions"]

"""ControlNet (Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023) on
every frame of a clip, as a pipeline condition (`pipeline/conditions.py`).

`ControlNet` says what to apply: a diffusers `ControlNetModel` (`formats/controlnet.py` loads one), one control
image per frame of the clip, a scale, the fraction of the steps it acts in, and guess mode. `pipe(...,
controlnets=[...])` binds each to the run (`controlnet_conditions`): its timesteps, the guided batch, the base it
steers. At every UNet call the bound `ControlNetCondition` picks the control images of the frames asked for (a
context window gets its own), repeats them for every video of the batch, runs the ControlNet on the frames folded
into the batch with the UNet's own latents and text (per video or per frame), and hands the UNet its residuals.
Several ControlNets add up, as diffusers' `MultiControlNetModel` sums them.

This is what diffusers' `AnimateDiffControlNetPipeline` computes, step for step (tests/test_controlnet_parity.py):
a ControlNet acts at step i of N unless i/N < start or (i+1)/N > end (its `control_guidance_start/end`); guess mode
runs it on the conditional half of the guided batch only, its residuals scaled from 0.1 down the encoder to 1 at
the middle (`ControlNetModel`'s own), the unconditional half getting none, as diffusers'
`StableDiffusionControlNetPipeline` does (the AnimateDiff pipeline omits that padding and fails under guidance).
A ControlNet whose config pools its conditions globally (shuffle) is always in guess mode, as in diffusers.
On latents of another size than the clip's (the gradual latent hires fix's smaller ones) the control images are
resized to them (`sized_control`: bicubic, as animatediff-cli-prompt-travel resizes them).

On an SDXL base an SDXL ControlNet's added text/time embeddings take the pooled text and size ids the UNet takes for
the same text (`sdxl.with_sdxl`), as diffusers' `StableDiffusionXLControlNetPipeline` gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from animatediff.errors import InputError
from animatediff.formats.controlnet import check_controlnet
from animatediff.pipeline.annotators import MASKED
from animatediff.pipeline.conditions import guidance_half
from animatediff.pipeline.control_inputs import check_control_range
from animatediff.sampling.context import step_index

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.conditions import Condition
    from animatediff.pipeline.sdxl import SDXLConditioning


@dataclass
class ControlNet:
    """One ControlNet and what it steers a clip with (diffusers' argument names in brackets)."""

    model: torch.nn.Module
    """A diffusers `ControlNetModel` for the base (`formats.controlnet.load_controlnet`), or a `T2IAdapter`
    (`pipeline/t2i_adapter.py`); it is moved to the pipeline's device when a call binds it."""
    frames: torch.Tensor | np.ndarray
    """The control images (`conditioning_frames`), one per frame of the whole clip, at the output size: a
    (f, 3, H, W) tensor or a (f, H, W, 3) array, as the pipeline returns frames; floats in [0, 1] or uint8. Kept as
    a float32 (f, 3, H, W) tensor."""
    scale: float = 1.0
    """How much of its residuals the UNet gets (`controlnet_conditioning_scale`); 0 switches it off."""
    start: float = 0.0
    """The fraction of the steps after which it starts acting (`control_guidance_start`), 0 … 1."""
    end: float = 1.0
    """The fraction of the steps after which it stops (`control_guidance_end`), start … 1."""
    guess_mode: bool = False
    """Guess mode (`guess_mode`): it sees the conditional half of the guided batch only, residuals scaled
    geometrically from 0.1 (shallowest) to 1 (middle): the control images speak with little or no prompt."""
    regions: Sequence[int | str] = ()
    """Where it acts with regional prompts: the call's regions by index and "background" (the call's own prompt), as
    prompt-travel's `control_region_list`; empty: every prediction (`acting_parts`)."""

    def __post_init__(self) -> None:
        check_control_range(self.start, self.end, self.scale)
        self.regions = control_regions(self.regions)
        if not isinstance(self.guess_mode, bool):
            raise InputError(f"ControlNet guess_mode must be True or False, got {self.guess_mode!r}")
        if not isinstance(self.model, torch.nn.Module):
            raise InputError(f"ControlNet model must be a diffusers ControlNetModel, got {type(self.model).__name__}")
        self.frames = control_frames_tensor(self.frames)


def control_regions(regions: object, what: str = "ControlNet") -> tuple[int | str, ...]:
    """A ControlNet's (or `what`'s) `regions` checked: region indices from 0 and "background"."""
    if isinstance(regions, (str, int)) or not isinstance(regions, Sequence):
        raise InputError(f"{what} regions must be a list of region indices and 'background', got {regions!r}")
    for region in regions:
        index = isinstance(region, int) and not isinstance(region, bool) and region >= 0
        if not index and region != "background":
            raise InputError(f"{what} region {region!r}: give a region's index from 0, or 'background'")
    return tuple(regions)


def acting_parts(
    controls: Sequence[object], regions: int, composed: bool, what: str = "ControlNet"
) -> list[set[int] | None]:
    """Per ControlNet (or keyframe ControlNet, or `what` with `regions`), the parts of a regional call it acts in
    (`pipeline.regions.regional`: 0 the call's own prompt, i + 1 region i), None for all; one line for a region the
    call does not have."""
    parts: list[set[int] | None] = []
    for i, control in enumerate(controls, start=1):
        named = getattr(control, "regions", ())
        if not named:
            parts.append(None)
            continue
        if composed or not regions:
            raise InputError(f"{what} {i} acts in regions {list(named)}, but the call draws no regional prompts")
        missing = [r for r in named if r != "background" and r >= regions]
        if missing:
            raise InputError(f"{what} {i}: region {missing[0]} is not one of the call's {regions} regions")
        parts.append({0 if r == "background" else r + 1 for r in named})
    return parts


def control_frames_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Control images as float32 (f, 3, H, W) in [0, 1]: a tensor is (f, 3, H, W), an array (f, H, W, 3); uint8 is
    divided by 255, floats must be in [0, 1], or -1 where ControlNet inpaint's condition marks the masked pixels
    (`annotators.MASKED`)."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"control frames: an array must be (frames, height, width, 3), got {frames.shape}")
        frames = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if not isinstance(frames, torch.Tensor):
        raise InputError(f"control frames must be a tensor or an array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[1] != 3 or min(frames.shape) < 1:
        raise InputError(f"control frames: a tensor must be (frames, 3, height, width), got {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    if not frames.is_floating_point():
        raise InputError(f"control frames must be uint8 or floats in [0, 1], got {frames.dtype}")
    frames = frames.detach().float()
    values = frames[frames != MASKED]  # but ControlNet inpaint's masked pixels
    if not torch.isfinite(frames).all() or (values.numel() and (values.min() < 0 or values.max() > 1)):
        raise InputError(
            f"control frames must be finite and in [0, 1] (or {MASKED:g} where masked for ControlNet inpaint), got "
            f"values from {values.min():.3g} to {values.max():.3g}"
        )
    return frames


def active_steps(num_steps: int, start: float, end: float) -> list[bool]:
    """Whether a ControlNet acts at each of `num_steps` steps: at step i unless i/N < start or (i+1)/N > end
    (diffusers' `controlnet_keep`)."""
    return [not (i / num_steps < start or (i + 1) / num_steps > end) for i in range(num_steps)]


class ControlNetCondition:
    """A `Condition`: one ControlNet bound to a run (see the module docstring)."""

    def __init__(
        self,
        control: ControlNet,
        timesteps: torch.Tensor,
        guided: bool,
        device: torch.device,
        factor: int | None = None,
    ) -> None:
        """`timesteps`: the run's (`sampling_timesteps`), by which a call's t gives its step (the first of a
        repeated timestep, the nearest for a t off the list: a FreeInit run of fewer steps follows the noise level);
        `guided`: the batch holds [uncond, cond] videos; `factor`: the VAE's, pixels per latent, by which the images
        are resized for latents of another size (None: never)."""
        self.factor = factor
        self.model = control.model
        self.scale = float(control.scale)
        config = getattr(self.model, "config", {})
        self.guess_mode = control.guess_mode or bool(config.get("global_pool_conditions", False))
        self.guided = guided
        self.sdxl: SDXLConditioning | None = None
        """SDXL: the pooled text and size ids of the text it is bound to (`sdxl.with_sdxl`), for its added
        embeddings."""
        dtype = getattr(self.model, "dtype", torch.float32)
        self.frames = control.frames.to(device=device, dtype=dtype)
        self.step_of = step_index(timesteps)
        self.active = active_steps(len(timesteps), control.start, control.end)

    def half(self, negative: bool) -> ControlNetCondition | None:
        """This condition for one half of the guidance (`conditions.guidance_half`)."""
        return guidance_half(self, negative)

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        """The ControlNet's residuals for latents x (b, c, f, h, w) holding the clip's `frames`, folded as the
        UNet folds them ((b·f), ...); nothing at a step it does not act in."""
        if self.scale == 0 or not self.active[self.step_of(t)]:
            return {}
        half = self.guess_mode and self.guided  # the conditional half only: [uncond, cond]
        if half:
            if x.shape[0] % 2:
                raise ValueError(f"a guided batch holds an even number of videos, got {x.shape[0]}")
            x, text = x.chunk(2)[1], text.chunk(2)[1]
        videos, num_frames = x.shape[0], x.shape[2]
        dtype = self.frames.dtype
        sample = rearrange(x, "b c f h w -> (b f) c h w").to(dtype)
        if text.ndim == 3:  # one text per video, repeated for its frames
            context = text.repeat_interleave(num_frames, dim=0)
        else:  # per-frame text (prompt travel)
            context = rearrange(text, "b f n d -> (b f) n d")
        cond = sized_control(self.frames[frames.to(self.frames.device)], x, self.factor).repeat(videos, 1, 1, 1)
        added = None if self.sdxl is None else self.sdxl.unet_kwargs(x, t, text, frames)["added_cond_kwargs"]
        down, mid = self.model(
            sample,
            t,
            encoder_hidden_states=context.to(dtype),
            controlnet_cond=cond,
            conditioning_scale=self.scale,
            guess_mode=self.guess_mode,
            added_cond_kwargs=added,
            return_dict=False,
        )
        down, mid = [d.to(x.dtype) for d in down], mid.to(x.dtype)
        if half:  # the unconditional videos get no residuals
            down, mid = unconditional_zeros(down, mid)
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}


def sized_control(images: torch.Tensor, latents: torch.Tensor, factor: int | None) -> torch.Tensor:
    """Control images (n, 3, H, W) for `latents` (…, h, w): as they are when H × W is h × w times `factor` (or
    `factor` is None), else resized to that, bicubic in float32; ControlNet inpaint's marks (`MASKED`) stay marks,
    resized nearest."""
    if factor is None:
        return images
    size = (latents.shape[-2] * factor, latents.shape[-1] * factor)
    if tuple(images.shape[-2:]) == size:
        return images
    resized = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False)
    marked = images == MASKED
    if marked.any():
        marks = F.interpolate(marked.float(), size=size, mode="nearest") > 0.5
        resized = torch.where(marks, torch.full_like(resized, MASKED), resized.clamp(0, 1))
    return resized.to(images.dtype)


def unconditional_zeros(down: list[torch.Tensor], mid: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Residuals of the conditional half of a guided batch, with zeros put first for its unconditional half."""
    return [torch.cat([torch.zeros_like(d), d]) for d in down], torch.cat([torch.zeros_like(mid), mid])


def controlnet_conditions(
    controlnets: Sequence[ControlNet],
    pipe: AnimationPipeline,
    timesteps: torch.Tensor,
    num_frames: int,
    height: int,
    width: int,
    guided: bool,
) -> list[Condition]:
    """`controlnets` bound to one call of `pipe`: checked against the base (family, VAE), the clip (one control
    image per frame; keyframes for a `KeyframeControlNet`) and the output size, each model moved to the pipeline's
    device."""
    from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet, KeyframeControlNetCondition
    from animatediff.pipeline.t2i_adapter import AdapterCondition, check_t2i_adapter, is_t2i_adapter

    conditions = []
    for i, control in enumerate(controlnets, start=1):
        name = f"ControlNet {i}" if len(controlnets) > 1 else "ControlNet"
        if not isinstance(control, (ControlNet, KeyframeControlNet)):
            raise InputError(
                f"{name}: expected an animatediff.pipeline.controlnet.ControlNet or a KeyframeControlNet, got "
                f"{type(control).__name__} (wrap a ControlNetModel with its control frames in a ControlNet)"
            )
        config = getattr(control.model, "config", None)
        adapter = is_t2i_adapter(control.model)  # a T2I-Adapter, given as ControlNets are (`pipeline/t2i_adapter.py`)
        if adapter:
            check_t2i_adapter(config, pipe.unet.config, name, pipe.vae_scale_factor)
            if isinstance(control, KeyframeControlNet) or control.guess_mode:
                raise InputError(f"{name}: a T2I-Adapter takes a control image per frame, without guess mode")
        elif config is not None:
            check_controlnet(config, pipe.unet.config, name, pipe.vae_scale_factor)
        sizes = [control.frames.shape[2:]] if isinstance(control, ControlNet) else [
            image.shape[1:] for image in control.keyframes.values()]  # fmt: skip
        if isinstance(control, ControlNet) and len(control.frames) != num_frames:
            raise InputError(
                f"{name}: {len(control.frames)} control frames for a clip of {num_frames} frames; give one per frame"
            )
        for h, w in sizes:
            if (h, w) != (height, width):
                raise InputError(
                    f"{name}: control frames of {w}×{h} for an output of {width}×{height} (width × height); "
                    "resize them to the output size (io.video_input.fit_frames)"
                )
        control.model.to(pipe.device)
        if adapter:
            conditions.append(AdapterCondition(control, timesteps, pipe.device, pipe.vae_scale_factor))
        elif isinstance(control, KeyframeControlNet):  # control images at some frames, spread to their neighbours
            conditions.append(
                KeyframeControlNetCondition(control, timesteps, num_frames, pipe.device, pipe.vae_scale_factor)
            )
        else:
            conditions.append(ControlNetCondition(control, timesteps, guided, pipe.device, pipe.vae_scale_factor))
    return conditions


__all__ = [
    "ControlNet",
    "ControlNetCondition",
    "active_steps",
    "control_frames_tensor",
    "controlnet_conditions",
    "unconditional_zeros",
]

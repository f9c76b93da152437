"""T2I-Adapter (Mou et al. 2023, arXiv 2302.08453) on every frame of a clip: a small network that turns a control
image (sketch, depth, pose, …) into features added inside the UNet's down blocks, lighter than a ControlNet, as a
pipeline condition (`pipeline/conditions.py`).

It is given as a ControlNet is (`pipeline.controlnet.ControlNet`, `--controlnet`, a run entry's `controlnet`): a
diffusers `T2IAdapter` (`formats/controlnet.load_controlnet` loads a folder whose config names one, and
`formats/t2i_adapter.py` TencentARC's original files) with one control
image per frame, a scale, and the fraction of the steps it acts in; ComfyUI loads and applies T2I-Adapters the same way.
Unlike a ControlNet it does not read the latents, the timestep or the text: its features are computed once per call, one
per frame, scaled by the scale (`adapter_conditioning_scale`), and handed to the UNet as
`down_intrablock_additional_residuals` at every step it acts in, for every video of the batch and both halves of the
guidance, as diffusers' `StableDiffusionAdapterPipeline` does (tests/test_t2i_adapter.py). A context window takes its
own frames' features; latents of another size (the gradual latent hires fix's) their own, of the images resized. An
adapter made for one channel (sketch, canny) takes the control images in grey. It has no guess mode, and takes no
keyframes (`KeyframeControlNet`). An SDXL base takes SDXL adapters (`full_adapter_xl`, TencentARC/t2i-adapter-*-sdxl-
1.0), whose last feature joins the middle block, as diffusers' `StableDiffusionXLAdapterPipeline` gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from animatediff.errors import InputError
from animatediff.pipeline.controlnet import active_steps, sized_control
from animatediff.sampling.context import step_index

if TYPE_CHECKING:
    from animatediff.pipeline.controlnet import ControlNet

GREY = (0.299, 0.587, 0.114)
"""ITU-R 601 luma, as PIL's `convert("L")` weighs the channels."""


def is_t2i_adapter(model: object) -> bool:
    """Whether `model` is a diffusers T2I-Adapter (rather than a ControlNet)."""
    from diffusers import T2IAdapter

    return isinstance(model, T2IAdapter)


def feature_widths(config: Mapping) -> list[int]:
    """The widths of the features an adapter gives, a level each: its channels (diffusers' light adapter repeats its
    last level)."""
    channels = list(config.get("channels", []))
    return channels + channels[-1:] if config.get("adapter_type") == "light_adapter" else channels


def check_t2i_adapter(config: Mapping, unet_config: Mapping, name: str, vae_scale_factor: int | None = None) -> None:
    """One line unless the adapter's features fit the base's UNet: an SDXL adapter (`full_adapter_xl`) for an SDXL
    base, another for SD1.x; a feature per down block, each as wide (SDXL's one more, for the middle block, as wide
    as the last); at the latents' size (its pixel unshuffle the VAE's factor; SDXL's twice it, its first feature
    joining after the first down block's downsampling)."""
    xl_adapter = config.get("adapter_type") == "full_adapter_xl"
    xl_base = unet_config.get("addition_embed_type") == "text_time"
    if xl_adapter != xl_base:
        kind, base = ("an SDXL", "an SD1.x") if xl_adapter else ("an SD1.x", "an SDXL")
        raise InputError(f"{name}: {kind} T2I-Adapter for {base} base; use an adapter made for this base")
    widths, blocks = feature_widths(config), list(unet_config["block_out_channels"])
    expected = blocks + blocks[-1:] if xl_base else blocks
    if widths != expected:
        raise InputError(
            f"{name}: a T2I-Adapter with features of widths {widths}, but the base UNet takes {expected}; use an "
            "adapter made for this base"
        )
    factor = config.get("downscale_factor")
    if vae_scale_factor is not None and factor is not None and factor != vae_scale_factor * (1 + xl_adapter):
        raise InputError(
            f"{name}: a T2I-Adapter for latents {factor}× smaller than its images, but this base's VAE makes them "
            f"{vae_scale_factor}× smaller"
        )


class AdapterCondition:
    """A `Condition`: one T2I-Adapter bound to a run (see the module docstring)."""

    def __init__(
        self, control: ControlNet, timesteps: torch.Tensor, device: torch.device, factor: int | None = None
    ) -> None:
        """`control`: a `ControlNet` whose model is a `T2IAdapter`; `timesteps`: the run's, by which a call's t gives
        its step; `factor`: the VAE's, pixels per latent, by which the images are resized for latents of another size
        (the gradual latent hires fix's smaller ones: `controlnet.sized_control`)."""
        self.model, self.factor = control.model, factor
        dtype = getattr(self.model, "dtype", torch.float32)
        self.frames = control.frames.to(device=device, dtype=dtype)
        if self.model.config.in_channels == 1:  # sketch, canny: the images in grey
            grey = torch.tensor(GREY, device=device, dtype=dtype)
            self.frames = torch.einsum("fchw,c->fhw", self.frames, grey)[:, None]
        self.scale = float(control.scale)
        self.step_of = step_index(timesteps)
        self.active = active_steps(len(timesteps), control.start, control.end)
        self._features: dict[tuple[int, int], list[torch.Tensor]] = {}

    def features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Every frame's features (frames, c, h, w) per level, scaled, for latents of `latents`' size: computed once
        per size."""
        size = tuple(latents.shape[-2:])
        if size not in self._features:
            with torch.no_grad():
                images = sized_control(self.frames, latents, self.factor)
                self._features[size] = [f * self.scale for f in self.model(images)]
        return self._features[size]

    def half(self, negative: bool) -> AdapterCondition:
        """This condition for one half of the guidance: the same, as both halves take its features."""
        return self

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        """The features of the clip's `frames` (held by x), for every video of x, folded as the UNet folds them
        ((b·f), c, h, w); nothing at a step it does not act in."""
        if self.scale == 0 or not self.active[self.step_of(t)]:
            return {}
        features = self.features(x)
        index = frames.to(features[0].device)
        residuals = [f[index].repeat(x.shape[0], 1, 1, 1).to(x.dtype) for f in features]
        return {"down_intrablock_additional_residuals": residuals}


__all__ = ["AdapterCondition", "check_t2i_adapter", "feature_widths", "is_t2i_adapter"]

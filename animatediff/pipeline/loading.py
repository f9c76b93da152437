"""Building an `AnimationPipeline` from a base and motion modules: `PipelineLoading`, the part of the pipeline that
loads them (`from_pretrained`: paths and hub ids) and puts them together (`from_base`: loaded parts), sampled as the
base was trained."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from animatediff.base_model import BaseModel, load_base
from animatediff.formats.motion_module_files import load_motion_modules
from animatediff.models import MotionModules, inflate_unet
from animatediff.sampling import make_scheduler, model_noise_settings

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline


class PipelineLoading:
    """The pipeline's factories; `from_base` is the one both `from_pretrained` and `ModelCache` build through."""

    @classmethod
    def from_base(
        cls,
        base: BaseModel,
        motion_modules: MotionModules,
        scheduler: str | SchedulerMixin = "ddim",
        device: str | torch.device = "cpu",
    ) -> AnimationPipeline:
        """The pipeline over a loaded base (`load_base`) and a motion-module set, sampled as the base was trained
        (its prediction type and zero-SNR schedule) and at its own default guidance."""
        unet = inflate_unet(base.unet, motion_modules.to(base.unet.dtype))
        if isinstance(scheduler, str):
            scheduler = make_scheduler(scheduler)
        traits = base.traits
        settings = model_noise_settings(traits.prediction_type, traits.zero_snr)
        pipe = cls(
            base.tokenizer, base.text_encoder, base.vae, unet, scheduler, settings, traits.guidance_scale, traits,
            base.tokenizer_2, base.text_encoder_2,
        )  # fmt: skip
        return pipe.to(device)

    @classmethod
    def from_pretrained(
        cls,
        base: str | os.PathLike,
        motion_module: str | os.PathLike | MotionModules,
        scheduler: str | SchedulerMixin = "ddim",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        dreambooth: str | os.PathLike | None = None,
        prediction_type: str | None = None,
        zero_snr: bool | None = None,
        vae: str | os.PathLike | None = None,
    ) -> AnimationPipeline:
        """`base`: a diffusers SD1.x or SDXL folder or hub id; `dreambooth`: a single-file checkpoint of its family
        replacing its UNet, VAE and text encoder; `vae`: a VAE file, folder or hub id replacing the VAE (the
        checkpoint's too); `prediction_type` / `zero_snr` override what the base's scheduler config says it was
        trained with (`load_base`)."""
        parts = load_base(base, dtype, dreambooth, prediction_type, zero_snr, vae)
        modules = motion_module if isinstance(motion_module, MotionModules) else load_motion_modules(motion_module)
        return cls.from_base(parts, modules, scheduler, device)

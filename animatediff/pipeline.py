"""Text-to-animation: prompt → CLIP embeddings → noise (b, 4, f, h, w) → guided denoising → VAE decode.

Follows the official AnimateDiff inference (github.com/guoyww/AnimateDiff, `pipeline_animation.py`) and uses
diffusers' argument names, so the same seed gives the same video as both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.defaults import GUIDANCE_SCALE, default_guidance_scale
from animatediff.formats.motion_module_files import load_motion_modules
from animatediff.formats.state_dicts import resolve_path
from animatediff.models import AnimationUNet, MotionModules, inflate_unet
from animatediff.sampling import (
    denoise,
    for_model,
    guided,
    initial_noise,
    make_scheduler,
    model_noise_settings,
    windowed,
)
from animatediff.text_encoding import encode_prompts

if TYPE_CHECKING:
    from animatediff.formats.lora import LoraMerger


@dataclass
class BaseModel:
    """The parts of a Stable Diffusion 1.x model an animation needs."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler_config: dict = field(default_factory=dict)
    """The folder's scheduler/scheduler_config.json (how it was trained: prediction type, zero-SNR); {} if none."""


def read_scheduler_config(folder: str | os.PathLike) -> dict:
    """A diffusers folder's scheduler/scheduler_config.json: how its model was trained ({} when it has none)."""
    path = Path(folder) / "scheduler" / "scheduler_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_base_model(path_or_id: str | os.PathLike, dtype: torch.dtype = torch.float32) -> BaseModel:
    """A diffusers-format SD1.x folder (unet/, vae/, text_encoder/, tokenizer/) or its hub id."""
    folder = resolve_path(path_or_id, "base model")
    missing = [sub for sub in ("unet", "vae", "text_encoder", "tokenizer") if not (folder / sub).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)}/")
    kwargs = {"local_files_only": True}
    return BaseModel(
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kwargs),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype, **kwargs),
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **kwargs),
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **kwargs),
        scheduler_config=read_scheduler_config(folder),
    )


class AnimationPipeline:
    """Generates animations with an inflated UNet; build it from parts or with `from_pretrained`."""

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        vae: AutoencoderKL,
        unet: AnimationUNet,
        scheduler: SchedulerMixin | None = None,
        noise_settings: dict | None = None,
        guidance_scale: float = GUIDANCE_SCALE,
    ) -> None:
        """`noise_settings` (`model_noise_settings`): how the base was trained, applied to this scheduler and kept
        for schedulers swapped in later (`for_model`). `guidance_scale`: what a call samples with when it names
        none (`from_pretrained` picks it for the base: `default_guidance_scale`)."""
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.unet = unet.eval().requires_grad_(False)
        self.noise_settings = noise_settings or {}
        self.guidance_scale = guidance_scale
        self.scheduler = for_model(scheduler or make_scheduler("ddim"), self.noise_settings)

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
    ) -> AnimationPipeline:
        """`dreambooth`: a single-file SD1.x checkpoint (LDM layout) replacing the base's UNet, VAE and text encoder.

        The scheduler samples as the base was trained: its scheduler config's prediction type ('epsilon' or
        'v_prediction') and zero-terminal-SNR rescaling, unless `prediction_type` / `zero_snr` say otherwise.
        Calls that name no guidance scale get the base's: 3 for a world model, else 7.5 (`default_guidance_scale`)."""
        folder = resolve_path(base, "base model")
        parts = load_base_model(folder, dtype)
        settings = model_noise_settings(parts.scheduler_config, prediction_type, zero_snr)
        if dreambooth:
            from animatediff.formats.single_file import load_single_file_weights

            load_single_file_weights(dreambooth, parts.unet, parts.vae, parts.text_encoder)
        modules = motion_module if isinstance(motion_module, MotionModules) else load_motion_modules(motion_module)
        unet = inflate_unet(parts.unet, modules.to(dtype))
        if isinstance(scheduler, str):
            scheduler = make_scheduler(scheduler)
        guidance = default_guidance_scale(folder)
        return cls(parts.tokenizer, parts.text_encoder, parts.vae, unet, scheduler, settings, guidance).to(device)

    @property
    def loras(self) -> LoraMerger:
        """LoRAs merged into this pipeline's weights, by name: switch, rescale or remove them exactly."""
        from animatediff.formats.lora import LoraMerger

        if getattr(self, "_loras", None) is None:
            parts = {
                "unet": self.unet.unet,
                "text_encoder": self.text_encoder,
                "motion_modules": self.unet.motion_modules,
            }
            self._loras = LoraMerger(parts)
        return self._loras

    def add_lora(
        self, path: str | os.PathLike, scale: float = 1.0, kind: str = "image", name: str | None = None
    ) -> str:
        """Merge a LoRA file; kind 'image' (kohya/PEFT), 'motion' (MotionLoRA) or 'adapter' (v3 domain adapter)."""
        from animatediff.formats.lora import load_lora
        from animatediff.formats.motion_lora import load_adapter_lora, load_motion_lora

        loaders = {"image": load_lora, "motion": load_motion_lora, "adapter": load_adapter_lora}
        if kind not in loaders:
            raise ValueError(f"unknown LoRA kind {kind!r}; expected one of {', '.join(loaders)}")
        if name is None:  # the same file given twice merges twice, under two names
            name = base = f"{kind}:{path}"
            for n in range(2, len(self.loras.active) + 2):
                if name not in self.loras.active:
                    break
                name = f"{base}#{n}"
        self.loras.add(name, loaders[kind](path), scale)
        return name

    def to(self, device: str | torch.device) -> AnimationPipeline:
        for part in (self.text_encoder, self.vae, self.unet):
            part.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this: the VAE factor times the UNet's total downsampling."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The base model's training resolution (512 for SD1.5), from the UNet's config."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """CLIP last hidden states at the tokenizer's full length (77 for SD), (len(prompts), 77, D)."""
        return encode_prompts(self.tokenizer, self.text_encoder, prompts).to(self.device, self.dtype)

    def check_inputs(
        self, num_frames: int, height: int, width: int, num_inference_steps: int, context_length: int | None = None
    ) -> None:
        m = self.size_multiple
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % m:
                vae = self.vae_scale_factor
                raise ValueError(
                    f"{name} {value} must be a positive multiple of {m} for this model "
                    f"(VAE factor {vae} × UNet downsampling {m // vae})"
                )
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        limit = self.unet.max_frames
        if context_length is not None and not 1 <= context_length <= limit:
            raise ValueError(f"context_length {context_length}: the motion module sees at most {limit} frames at once")
        if num_frames > limit and context_length is None:
            raise ValueError(
                f"{num_frames} frames requested, but this motion module's position encoding holds at most {limit}; "
                f"ask for {limit} or fewer frames, or set a context length (e.g. 16) to denoise in sliding windows"
            )
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int = 16,
        progress: bool = True,
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
        context_length: int | None = None,
        context_overlap: int = 4,
        context_fuse: str = "pyramid",
    ) -> np.ndarray:
        """Frames as float32 in [0, 1], shape (videos, frames, height, width, 3).

        `context_length`: denoise in sliding windows of this many frames (overlapping by `context_overlap`, fused
        with `context_fuse` weights), for clips longer than the motion module's position encoding.
        `guidance_scale`: classifier-free guidance; None takes the pipeline's (`self.guidance_scale`).
        `guidance_rescale`: φ of Lin et al. 2024 (0 = plain guidance), for zero-terminal-SNR bases.
        """
        guidance_scale = self.guidance_scale if guidance_scale is None else guidance_scale
        height = height or self.native_size
        width = width or self.native_size
        self.check_inputs(num_frames, height, width, num_inference_steps, context_length)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * len(prompts)
        if len(negatives) != len(prompts):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")

        # 1. Text: one embedding per prompt; the UNet repeats it per frame.
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt(negatives) if guidance_scale > 1.0 else None

        # 2. Noise: (b, 4, f, h/8, w/8) from one CPU randn.
        f = self.vae_scale_factor
        shape = (len(prompts), self.unet.config.in_channels, num_frames, height // f, width // f)
        if latents is None:
            latents = initial_noise(shape, seed, generator, self.device, self.dtype)

        # 3. Denoise.
        predict = lambda x, t, ctx: self.unet(x, t, ctx)  # noqa: E731
        if context_length is not None:
            predict = windowed(predict, num_frames, context_length, context_overlap, context_fuse)
        predict = guided(predict, uncond, cond, guidance_scale, guidance_rescale)
        latents = denoise(predict, self.scheduler, latents, num_inference_steps, generator, progress, callback)

        # 4. Decode frame chunks.
        return self.decode(latents, decode_chunk_size)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decode_chunk_size: int = 16) -> np.ndarray:
        b, _, num_frames, _, _ = latents.shape
        flat = (latents / self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4).flatten(0, 1)
        frames = torch.cat(
            [self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in flat.split(decode_chunk_size)]
        )
        frames = (frames.float() / 2 + 0.5).clamp(0, 1)
        frames = frames.unflatten(0, (b, num_frames)).permute(0, 1, 3, 4, 2)
        return frames.cpu().numpy()

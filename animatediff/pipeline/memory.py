"""Small-GPU modes and speed options of `AnimationPipeline`, in one place: `MemoryOptions` and the `MemoryModes`
methods the pipeline has.

- **VAE slicing** (`decode_chunk_size`, 16 frames by default): frames per VAE call, in the decode and in the
  video-to-video encode; the VAE's activations are those of that many frames. The same frames up to float rounding
  (the convolutions' sums in another order for another batch: ≤ 1e-6 on the tiny test models).
- **VAE tiling** (diffusers' `AutoencoderKL.enable_tiling`): each frame decoded (and encoded) in overlapping tiles of
  the VAE's sample size (512 px for SD1.5, 1024 for SDXL), blended at the seams; it engages only above that size,
  and the frames then differ slightly from untiled ones.
- **CPU offload** (accelerate's hooks, as diffusers' `enable_model_cpu_offload` / `enable_sequential_cpu_offload`):
  `model` keeps the text encoder(s), the UNet (the inflated UNet with its motion modules, one module) and the VAE
  in CPU memory and moves each to the GPU when it runs, offloading the one before; `sequential` keeps every layer's
  weights in CPU memory and moves them in for that layer's call only (least memory, slowest). Exact.
- **Text encoders freed** after the text step: moved back to CPU memory (under `model` offload always).
- **Feed-forward chunking** (`ff_chunk`): the motion modules' FFN on that many (b·h·w) frame sequences at a time
  (`models/motion_module.py`). Each sequence is computed alone either way: the same frames (bit for bit on the tiny
  test models; at most float rounding of the smaller matrix products).
- **Compile** (`models/regional_compile.py`): torch.compile of the UNet's blocks and motion modules, one by one.
- **Channels-last** (`channels_last`): the UNet's convolution weights stored channels-last (NHWC), so convolutions
  run on the NHWC kernels GPUs prefer in half precision; the same math (frames within float rounding). It does not
  help on CPU (the pipeline benchmark's figures); `benchmarks/gpu_check.py` measures it on a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.extras import require
from animatediff.models.motion_module import MotionModule
from animatediff.models.regional_compile import compile_unet, uncompile_unet

OFFLOAD_MODES = ("none", "model", "sequential")


def check_chunk(name: str, value: int | None, unit: str) -> None:
    """An InputError unless `value` (a chunk size) is None or an integer of at least 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InputError(f"{name} must be at least 1 {unit}, got {value!r}")


@dataclass(frozen=True)
class MemoryOptions:
    """How a pipeline trades speed for memory, or memory and a first call's time for speed (module docstring)."""

    vae_slicing: int = 16
    """Frames per VAE call (the pipeline's `decode_chunk_size`)."""
    vae_tiling: bool = False
    """Decode and encode each frame in blended tiles (diffusers' VAE tiling)."""
    offload: str = "none"
    """'none', 'model' (each model on the GPU while it runs) or 'sequential' (each layer's weights while it runs)."""
    ff_chunk: int | None = None
    """Motion-module FFN on this many (b·h·w) frame sequences at a time; None: all at once."""
    compile: bool = False
    """Regional torch.compile of the UNet; the first call compiles (slow), later ones are faster."""
    free_text_encoder: bool = False
    """Text encoder(s) back to CPU memory after each text step (always so under offload)."""
    channels_last: bool = False
    """The UNet's convolution weights channels-last (NHWC): for GPUs, in fp16/bf16."""

    def __post_init__(self) -> None:
        check_chunk("vae_slicing", self.vae_slicing, "frame")
        check_chunk("ff_chunk", self.ff_chunk, "sequence")
        if self.offload not in OFFLOAD_MODES:
            raise InputError(f"offload {self.offload!r}: expected one of {', '.join(OFFLOAD_MODES)}")
        if self.compile and self.offload == "sequential":
            raise InputError(
                "compile with sequential offload: its per-layer hooks break every compiled block; use model offload"
            )

    def load_device(self, device: str | torch.device) -> str | torch.device:
        """Where to load the models: CPU memory when they are offloaded (the GPU takes them part by part), else
        `device`."""
        return "cpu" if self.offload != "none" else device


class MemoryModes:
    """`AnimationPipeline`'s memory and speed switches; the attributes here are its defaults."""

    decode_chunk_size: int = 16
    """Frames per VAE call (VAE slicing), when a call names none."""
    free_text_encoder: bool = False
    """Move the text encoder(s) to CPU memory after every text step, and back to the device before the next."""
    offload: str = "none"
    """The CPU offload in place: 'none', 'model' or 'sequential' (set by the enable_*_cpu_offload methods)."""
    _offload_device: torch.device | None = None
    _offload_hooks: dict = {}  # replaced, never changed in place

    # The pipeline's parts (set by AnimationPipeline.__init__).
    text_encoder: nn.Module
    text_encoder_2: nn.Module | None
    unet: nn.Module
    vae: nn.Module

    def _parts(self) -> list[nn.Module]:
        return [p for p in (self.text_encoder, self.text_encoder_2, self.unet, self.vae) if p is not None]

    def _text_encoders(self) -> list[nn.Module]:
        return [p for p in (self.text_encoder, self.text_encoder_2) if p is not None]

    def enable_vae_tiling(self) -> None:
        """Decode (and encode) each frame in overlapping tiles of the VAE's sample size, blended at the seams."""
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        self.vae.disable_tiling()

    def set_ff_chunk(self, chunk: int | None) -> None:
        """Feed-forward chunking: every motion module's FFN on `chunk` (b·h·w) frame sequences at a time; None:
        all at once. Set it again after swapping motion modules."""
        check_chunk("ff_chunk", chunk, "sequence")
        for module in self.unet.motion_modules.modules():
            if isinstance(module, MotionModule):
                module.set_ff_chunk(chunk)

    def set_channels_last(self, enabled: bool) -> None:
        """The UNet's (and its motion modules') 4-D weights channels-last (NHWC) or back to contiguous (NCHW)."""
        self.unet.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def compile_unet(self, mode: str | None = None) -> int:
        """Regional torch.compile of the UNet for its device (`models/regional_compile.py`): how many blocks are
        compiled, 0 (with one line logged) where torch.compile cannot run here. The first call compiles them."""
        if self.offload == "sequential":
            raise InputError("compile with sequential offload: its per-layer hooks break every compiled block")
        return compile_unet(self.unet, self.device, mode)

    def uncompile_unet(self) -> None:
        uncompile_unet(self.unet)

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Keep the models in CPU memory and move each to `device` when it runs (accelerate's
        `cpu_offload_with_hook`, chained text encoder(s) → UNet with its motion modules → VAE): the one before is
        offloaded as the next starts, the text encoders right after the text step, the rest after each call."""
        require("accelerate", "model CPU offload")
        from accelerate import cpu_offload_with_hook

        self.disable_cpu_offload()
        device = torch.device(device)
        hooks, previous = {}, None
        for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
            part = getattr(self, name)
            if part is None:
                continue
            part.to("cpu")
            # The text encoders are offloaded together after the text step; the UNet offloads the last of them.
            chain = None if name == "text_encoder_2" else previous
            _, hooks[name] = cpu_offload_with_hook(part, device, prev_module_hook=chain)
            previous = hooks[name]
        self._offload_hooks, self._offload_device, self.offload = hooks, device, "model"

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Keep every layer's weights in CPU memory and move them to `device` for that layer's call only (accelerate's
        `cpu_offload`): the least device memory, the slowest. Merge LoRAs before, not after."""
        require("accelerate", "sequential CPU offload")
        from accelerate import cpu_offload

        self.disable_cpu_offload()
        device = torch.device(device)
        for part in self._parts():
            part.to("cpu")
            cpu_offload(part, device, offload_buffers=len(part._parameters) > 0)
        self._offload_device, self.offload = device, "sequential"

    def disable_cpu_offload(self) -> None:
        """Remove the offload hooks; the weights stay in CPU memory (`to(device)` moves them)."""
        if self.offload == "none":
            return
        from accelerate.hooks import remove_hook_from_module

        for part in self._parts():
            remove_hook_from_module(part, recurse=True)
        self._offload_hooks, self._offload_device, self.offload = {}, None, "none"

    @contextmanager
    def text_step(self) -> Iterator[None]:
        """Around the text encoding: under model offload, the text encoders go back to CPU memory after it; with
        `free_text_encoder` (no offload), they come to the device for it and go back to CPU memory after."""
        encoders = self._text_encoders()
        if self.free_text_encoder and self.offload == "none":
            for encoder in encoders:
                encoder.to(self.device)
        try:
            yield
        finally:
            if self.offload == "model":
                for name in ("text_encoder", "text_encoder_2"):
                    if name in self._offload_hooks:
                        self._offload_hooks[name].offload()
            elif self.free_text_encoder and self.offload == "none":
                for encoder in encoders:
                    encoder.to("cpu")

    def offload_models(self) -> None:
        """Under model offload, every model back to CPU memory (after a call, so the GPU is free between calls)."""
        for hook in self._offload_hooks.values():
            hook.offload()

    def apply_memory_options(self, options: MemoryOptions, device: str | torch.device | None = None) -> None:
        """Set every switch as `options` says; `device`: where the models run (the offload's GPU), None: where the
        pipeline runs now. Merge LoRAs before sequential offload; set it again after swapping motion modules."""
        device = self.device if device is None else torch.device(device)
        self.decode_chunk_size = options.vae_slicing
        self.free_text_encoder = options.free_text_encoder
        (self.enable_vae_tiling if options.vae_tiling else self.disable_vae_tiling)()
        self.set_ff_chunk(options.ff_chunk)
        self.set_channels_last(options.channels_last)  # before offload, whose hooks keep a weight's format
        if options.offload == "model":
            self.enable_model_cpu_offload(device)
        elif options.offload == "sequential":
            self.enable_sequential_cpu_offload(device)
        elif self.offload != "none":
            self.disable_cpu_offload()
            self.to(device)
        if options.compile:
            self.compile_unet()
        else:
            self.uncompile_unet()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decode_chunk_size: int | None = None) -> np.ndarray:
        """Latents (b, c, f, h, w) → frames (b, f, H, W, 3) in [0, 1], `decode_chunk_size` frames per VAE call (None:
        the pipeline's, 16 unless set); each chunk leaves the device as it is decoded, so device memory does not grow
        with the clip."""
        decode_chunk_size = self.decode_chunk_size if decode_chunk_size is None else decode_chunk_size
        b, _, num_frames, _, _ = latents.shape
        flat = (latents / self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4).flatten(0, 1)
        chunks = [
            (self.vae.decode(chunk.to(self.vae.dtype)).sample.float().cpu() / 2 + 0.5).clamp(0, 1)
            for chunk in flat.split(decode_chunk_size)
        ]
        frames = torch.cat(chunks).unflatten(0, (b, num_frames)).permute(0, 1, 3, 4, 2)
        return frames.numpy()

"""What sizes and clip lengths a pipeline draws: `PipelineSizes`, the part of `AnimationPipeline` that reads them off
its VAE, UNet and motion modules and checks a call's against them."""

from __future__ import annotations

from animatediff.base_model import FAMILIES, size_multiple, vae_scale_factor
from animatediff.errors import InputError


class PipelineSizes:
    """Sizes and clip lengths; the pipeline's `vae`, `unet` and `traits` are read."""

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae.config)

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this: the VAE factor times the UNet's total downsampling."""
        return size_multiple(self.unet.config, self.vae.config)

    @property
    def native_size(self) -> int:
        """The base model's training resolution (512 for SD1.5), from the UNet's config."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def check_inputs(
        self, num_frames: int, height: int, width: int, num_inference_steps: int, context_length: int | None = None
    ) -> None:
        m = self.size_multiple
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % m:
                vae = self.vae_scale_factor
                family = f"{FAMILIES[self.traits.family]} " if self.traits is not None else ""
                raise InputError(
                    f"{name} {value} must be a positive multiple of {m} for this {family}model "
                    f"(VAE factor {vae} × UNet downsampling {m // vae})"
                )
        if num_frames < 1:
            raise InputError(f"num_frames must be at least 1, got {num_frames}")
        limit = self.unet.max_frames
        if context_length is not None and not 1 <= context_length <= limit:
            raise InputError(f"context_length {context_length}: the motion module sees at most {limit} frames at once")
        if num_frames > limit and context_length is None:
            raise InputError(
                f"{num_frames} frames requested, but this motion module's position encoding holds at most {limit}; "
                f"ask for {limit} or fewer frames, or set a context length (e.g. 16) to denoise in sliding windows"
            )
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}")

"""diffusers' AnimateDiff classes, corrected where they depart from the official code, as a test reference."""

from __future__ import annotations

import torch
from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from einops import rearrange
from torch import nn

from animatediff.formats.motion_module_files import motion_state_dict, official_to_diffusers
from animatediff.models import MotionModules


class PerFrameGroupNorm(nn.Module):
    """diffusers normalizes (b, c, f, h, w) over all frames; the official module normalizes each frame."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[2]
        y = self.norm(rearrange(x, "b c f h w -> (b f) c h w"))
        return rearrange(y, "(b f) c h w -> b c f h w", f=f)


def diffusers_adapter(modules: MotionModules) -> MotionAdapter:
    cfg = modules.config
    adapter = MotionAdapter(
        block_out_channels=cfg.block_out_channels,
        motion_layers_per_block=cfg.layers_per_block,
        motion_transformer_layers_per_block=cfg.num_transformer_blocks,
        motion_num_attention_heads=cfg.num_attention_heads,
        motion_norm_num_groups=cfg.norm_num_groups,
        motion_max_seq_length=cfg.max_frames,
        use_motion_mid_block=cfg.use_mid_block,
    )
    adapter.load_state_dict(official_to_diffusers(motion_state_dict(modules)), strict=True)
    return adapter.eval()


def diffusers_motion_unet(unet: UNet2DConditionModel, modules: MotionModules) -> UNetMotionModel:
    """diffusers' UNetMotionModel over our weights, its motion norm as the official modules': per frame for SD1.x,
    over the clip (diffusers' own) for SDXL's (`MotionModuleConfig.norm_over_frames`)."""
    model = UNetMotionModel.from_unet2d(unet, diffusers_adapter(modules)).eval()
    if getattr(unet, "add_embedding", None) is not None:
        # from_unet2d leaves SDXL's added-conditioning embedding as initialised (noted when AnimateDiff SDXL was
        # merged, huggingface/diffusers#6721, left for later); the 2-D UNet's own weights are the ones meant.
        model.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    if not modules.config.norm_over_frames:
        for module in [m for m in model.modules() if isinstance(m, AnimateDiffTransformer3D)]:
            module.norm = PerFrameGroupNorm(module.norm)
    return model


def diffusers_pipeline(  # noqa: ANN201
    ours,  # noqa: ANN001
    scheduler=None,  # noqa: ANN001
    vae=None,  # noqa: ANN001
    motion_adapter: bool = False,
    cls=AnimateDiffPipeline,  # noqa: ANN001
    **extra,  # noqa: ANN003
):
    """diffusers' AnimateDiffPipeline (or `cls`, another of its AnimateDiff pipelines, with its `extra` arguments)
    over our pipeline's weights (its motion norm per frame, as the official modules'), progress bar off; `scheduler`
    / `vae` in place of ours, `motion_adapter`: also hand it the adapter (FreeNoise and prompt travel read it)."""
    reference = cls(
        vae=vae or ours.vae,
        text_encoder=ours.text_encoder,
        tokenizer=ours.tokenizer,
        unet=diffusers_motion_unet(ours.unet.unet, ours.unet.motion_modules),
        motion_adapter=diffusers_adapter(ours.unet.motion_modules) if motion_adapter else None,
        scheduler=scheduler or ours.scheduler,
        **extra,
    )
    reference.set_progress_bar_config(disable=True)
    return reference


def frames_as_images(reference, vae_scale_factor: int, images, seed: int, **call):  # noqa: ANN001, ANN003, ANN201
    """What diffusers' image pipeline `reference` (ControlNet, adapter) draws for a clip of `images` as a batch of
    images: each frame its own start noise (the clip's at `seed`, as our pipeline draws it) and control image, the
    call's prompts repeated per frame; the reference for a clip whose motion modules add nothing."""
    reference.set_progress_bar_config(disable=True)
    frames, height, width = len(images), call["height"], call["width"]
    shape = (1, 4, frames, height // vae_scale_factor, width // vae_scale_factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    batch = {key: [value] * frames if key in ("prompt", "negative_prompt") else value for key, value in call.items()}
    control = torch.from_numpy(images).permute(0, 3, 1, 2)
    return reference(**batch, image=control, latents=noise[0].transpose(0, 1), output_type="np").images

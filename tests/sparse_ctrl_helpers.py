"""Tiny random SparseCtrl encoders for the tests, and diffusers' SparseControlNetModel holding the same weights (its
motion norm made per frame, as the official encoder's)."""

from __future__ import annotations

import torch
from diffusers import SparseControlNetModel, UNet2DConditionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from animatediff.formats.sparse_ctrl import model_state_dict, official_to_diffusers_sd
from animatediff.formats.sparse_ctrl_configs import diffusers_config
from animatediff.models.sparse_ctrl import SparseControlNet, SparseCtrlConfig
from tests.diffusers_reference import PerFrameGroupNorm


def tiny_sparse_ctrl(
    unet: UNet2DConditionModel, kind: str = "rgb", seed: int = 21, spread: float = 0.1
) -> SparseControlNet:
    """An encoder shaped after `unet`: 'rgb' (latent condition, simplified embedding) or 'scribble' (images, the
    convolution stack bringing them down 2× as the tiny VAE does), every weight moved off its start (the zero
    convolutions and motion output projections included) so that it steers."""
    config = SparseCtrlConfig(
        conditioning_channels=4 if kind == "rgb" else 3, simplified_embedding=kind == "rgb", embedding_channels=(16, 32)
    )
    torch.manual_seed(seed)
    model = SparseControlNet.from_unet(unet, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * spread)
    return model.eval().requires_grad_(False)


def diffusers_sparse_ctrl(model: SparseControlNet, per_frame_norm: bool = True) -> SparseControlNetModel:
    """diffusers' SparseControlNetModel with `model`'s weights; `per_frame_norm`: its motion GroupNorms made per
    frame (a wrapper, whose weights are then named `norm.norm.*`)."""
    config = {k: v for k, v in diffusers_config(model).items() if not k.startswith("_")}
    reference = SparseControlNetModel(**config)
    reference.load_state_dict(official_to_diffusers_sd(model_state_dict(model)), strict=True)
    for module in [m for m in reference.modules() if isinstance(m, AnimateDiffTransformer3D) and per_frame_norm]:
        module.norm = PerFrameGroupNorm(module.norm)
    return reference.eval()

"""Tiny random ControlNets for the ControlNet tests, and the original (lllyasviel/ControlNet) single-file layout.

The rename table is written by hand from `cldm/cldm.py` (`input_hint_block`, `zero_convs`, `middle_block_out`) and
the LDM UNet names of `animatediff.formats.ldm_export`, independently of diffusers' converter, which the loader
uses: a file written here and loaded back checks that conversion.
"""

from __future__ import annotations

import re

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from animatediff.formats.ldm_export import unet_key


def tiny_controlnet(
    unet: UNet2DConditionModel, seed: int = 11, stages: tuple[int, ...] = (16, 32), spread: float = 0.3
) -> ControlNetModel:
    """A ControlNet for `unet` (its encoder's weights, as `from_unet` copies them), its hint encoder downsampling
    2^(len(stages)−1)× (the tiny VAE's 2× for two stages), and the zero-initialised convolutions (the residual
    outputs, the hint encoder's last conv) drawn at random, so that it steers."""
    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=stages)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                p.normal_(0, spread)
    return model.eval().requires_grad_(False)


def _hint_key(key: str) -> str | None:
    if key.startswith("controlnet_cond_embedding.conv_in."):
        return "input_hint_block.0." + key.rsplit(".", 1)[1]
    if key.startswith("controlnet_cond_embedding.conv_out."):
        return "input_hint_block.14." + key.rsplit(".", 1)[1]
    if m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)$", key):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
    if m := re.match(r"controlnet_down_blocks\.(\d+)\.(weight|bias)$", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.match(r"controlnet_mid_block\.(weight|bias)$", key):
        return f"middle_block_out.0.{m[1]}"
    return None


def ldm_controlnet_state_dict(model: ControlNetModel, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    """`model`'s weights under the original ControlNet names (`control_model.*` as the v1.1 .pth files hold them)."""
    sd = {}
    for key, value in model.state_dict().items():
        new = _hint_key(key) or unet_key(key, model)
        sd[prefix + new] = value.detach().clone().contiguous()
    assert len(sd) == len(model.state_dict())
    return sd

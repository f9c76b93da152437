"""The SDXL single-file (SGM) layout for tests: SGM names read off diffusers' own conversion, and the real SDXL
base's modules built on the meta device (shapes only, no memory), to check names against the real layout."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from animatediff.formats.ldm_export import UNET_PREFIX, unet_key


def sgm_names_by_diffusers(unet: UNet2DConditionModel) -> dict[str, str]:
    """{diffusers weight name: SGM weight name}, the inverse of diffusers' `convert_ldm_unet_checkpoint`.

    Candidate SGM names come from the package's rename table; diffusers' converter runs on a state dict whose values
    are unique index tensors, so each diffusers weight it fills names the SGM key it was read from: a name the
    converter maps elsewhere, or does not read, shows up here as a wrong or missing entry."""
    own = unet.state_dict()
    candidates = [UNET_PREFIX + unet_key(k, unet) for k in own]
    indexed = {name: torch.tensor([i]) for i, name in enumerate(candidates)}
    converted = convert_ldm_unet_checkpoint(indexed, dict(unet.config))
    inverse = {key: candidates[int(value)].removeprefix(UNET_PREFIX) for key, value in converted.items()}
    if set(inverse) != set(own):
        raise AssertionError(f"diffusers' converter did not give back the UNet: {sorted(set(own) ^ set(inverse))[:4]}")
    return inverse


def real_sdxl_on_meta() -> tuple[UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTextModelWithProjection]:
    """SDXL base 1.0's UNet, VAE and text encoders as configured in stabilityai/stable-diffusion-xl-base-1.0, on
    the meta device."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            sample_size=1024,
        )
        clip_l = CLIPTextModel(
            CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        )
        big_g = CLIPTextModelWithProjection(
            CLIPTextConfig(
                hidden_size=1280,
                intermediate_size=5120,
                num_hidden_layers=32,
                num_attention_heads=20,
                projection_dim=1280,
                hidden_act="gelu",
            )
        )
    return unet, vae, clip_l, big_g

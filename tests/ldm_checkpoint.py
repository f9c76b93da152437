"""Write diffusers SD1.x modules as one original-LDM-layout state dict (what CivitAI files hold), for tests.

The rename table is written here by hand from the CompVis layout, independently of diffusers' own conversion,
so loading the result through the library checks that conversion rather than repeating it.
"""

from __future__ import annotations

import re

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))  # fmt: skip
VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _unet_key(key: str, unet: UNet2DConditionModel) -> str:
    per = unet.config.layers_per_block + 1  # LDM numbers layers + the down/upsampler consecutively
    fixed = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"input_blocks.{per * i + j + 1}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        index = 1 if m[1] == "attentions" else 2 * int(m[2])
        return f"middle_block.{index}.{_resnet(m[3], m[1])}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"output_blocks.{per * i + j}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        i = int(m[1])
        slot = 2 if getattr(unet.up_blocks[i], "attentions", None) else 1
        return f"output_blocks.{per * i + per - 1}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def _resnet(rest: str, kind: str) -> str:
    if kind != "resnets":
        return rest  # spatial transformers keep their names
    for old, new in RESNET:
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    raise KeyError(rest)


def _vae_key(key: str, n: int) -> str:
    for old, new in (("encoder.conv_norm_out", "encoder.norm_out"), ("decoder.conv_norm_out", "decoder.norm_out")):
        key = key.replace(old, new)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{n - 1 - int(m[1])}.block.", key)
    key = re.sub(
        r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{n - 1 - int(m[1])}.upsample.", key
    )
    key = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    key = key.replace("mid_block.attentions.0.", "mid.attn_1.").replace(".conv_shortcut.", ".nin_shortcut.")
    if ".attn_1." in key:
        for old, new in VAE_ATTENTION:
            key = key.replace(f".attn_1.{old}.", f".attn_1.{new}.")
    return key


def ldm_state_dict(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, text_model_level: bool = True
) -> dict:
    """text_model_level: CLIP keys as `cond_stage_model.transformer.text_model.*` (most files) or without that level
    (files saved with transformers < 4.22)."""
    sd = {f"model.diffusion_model.{_unet_key(k, unet)}": v for k, v in unet.state_dict().items()}
    n = len(vae.config.block_out_channels)
    for key, value in vae.state_dict().items():
        new = _vae_key(key, n)
        if ".attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention projections are 1×1 convolutions
        sd[f"first_stage_model.{new}"] = value
    for key, value in text_encoder.state_dict().items():
        sd[f"cond_stage_model.transformer.{'text_model.' * text_model_level}{key}"] = value
    return {k: v.clone().contiguous() for k, v in sd.items()}


def save_ldm_checkpoint(path, unet, vae, text_encoder, wrap: bool = False, text_model_level: bool = True) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    sd = ldm_state_dict(unet, vae, text_encoder, text_model_level)
    if str(path).endswith(".safetensors"):
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd} if wrap else sd, path)

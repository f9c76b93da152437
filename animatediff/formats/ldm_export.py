"""Write diffusers SD1.x or SDXL modules as one single-file checkpoint in the original LDM/CompVis (SGM) layout.

That is the layout CivitAI-style personalized models come in: `model.diffusion_model.*` (UNet),
`first_stage_model.*` (VAE), `cond_stage_model.transformer.text_model.*` (CLIP text encoder), the whole image model
in one file. The rename table below is written by hand from the CompVis layout (github.com/CompVis/
stable-diffusion, `ldm/modules/diffusionmodules/openaimodel.py` and `.../model.py`), independently of diffusers'
own conversion: loading the result back through diffusers' converter (`formats/single_file.py`) checks both.
`ldm_vae_state_dict` gives the VAE alone under the same names, as separate VAE files (vae-ft-mse-840000-ema-pruned)
hold it.

SDXL files (Stability's generative-models, `sgm/`) keep the UNet and VAE names (the UNet adds `label_emb.0.0` /
`label_emb.0.2`, the size and pooled-text embedding) and hold the two text encoders as the conditioner's embedders:
`conditioner.embedders.0.transformer.text_model.*` (CLIP ViT-L, transformers names) and
`conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG in open_clip's names, `open_clip/transformer.py`:
`transformer.resblocks.N.{ln_1,attn.in_proj_weight (q, k, v stacked),attn.out_proj,ln_2,mlp.c_fc,mlp.c_proj}`,
`token_embedding.weight`, `positional_embedding`, `ln_final`, and `text_projection` applied as `x @ P`, the
transpose of transformers' `text_projection.weight`).

The file holds weights only. The VAE's `scaling_factor` and the scheduler stay with the base folder the file is
loaded onto, as they do for SD1.5 files (whose 0.18215 lives in the LDM yaml, not in the checkpoint).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from animatediff.formats.state_dicts import write_state_dict

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT_2_PREFIX = "conditioner.embedders.1.model."

# diffusers ResnetBlock2D → LDM ResBlock (the Sequential indices skip its SiLU and Dropout layers).
RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))  # fmt: skip
UNET_FIXED = (
    ("conv_in", "input_blocks.0.0"),
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("conv_norm_out", "out.0"),
    ("conv_out", "out.2"),
    ("add_embedding.linear_1", "label_emb.0.0"),  # SDXL's size and pooled-text embedding
    ("add_embedding.linear_2", "label_emb.0.2"),
)
# transformers CLIP encoder layer → open_clip ResidualAttentionBlock (q/k/v are fused, see `open_clip_state_dict`).
OPEN_CLIP_LAYER = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))  # fmt: skip
OPEN_CLIP_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _prefix_swap(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in table:
        if key.startswith(old + "."):
            return new + key[len(old) :]
    return None


def _resnet(rest: str, kind: str) -> str:
    if kind != "resnets":
        return rest  # spatial transformers keep their names
    renamed = _prefix_swap(rest, RESNET)
    if renamed is None:
        raise KeyError(rest)
    return renamed


def unet_key(key: str, unet: UNet2DConditionModel) -> str:
    """A diffusers UNet2DConditionModel weight name → its LDM `openaimodel.UNetModel` name (no prefix)."""
    per = unet.config.layers_per_block + 1  # LDM numbers each block's layers and its down/upsampler consecutively
    if (fixed := _prefix_swap(key, UNET_FIXED)) is not None:
        return fixed
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"input_blocks.{per * i + j + 1}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        index = 1 if m[1] == "attentions" else 2 * int(m[2])  # middle_block = resnet, transformer, resnet
        return f"middle_block.{index}.{_resnet(m[3], m[1])}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        return f"output_blocks.{per * i + j}.{0 if kind == 'resnets' else 1}.{_resnet(rest, kind)}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        i = int(m[1])
        slot = 2 if getattr(unet.up_blocks[i], "attentions", None) else 1  # after the resnet (and transformer)
        return f"output_blocks.{per * i + per - 1}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet weight {key!r}")


def vae_key(key: str, num_blocks: int) -> str:
    """A diffusers AutoencoderKL weight name → its LDM `AutoencoderKL` name (no prefix)."""
    n = num_blocks
    for old, new in (("encoder.conv_norm_out", "encoder.norm_out"), ("decoder.conv_norm_out", "decoder.norm_out")):
        key = key.replace(old, new)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    # LDM's decoder counts its up blocks from the lowest resolution, diffusers' from the highest.
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


def open_clip_state_dict(text_encoder_2: CLIPTextModelWithProjection) -> dict[str, torch.Tensor]:
    """SDXL's second text encoder (transformers names) → open_clip's names (no prefix): each layer's q, k and v
    stacked into `attn.in_proj_weight` / `in_proj_bias`, `text_projection` transposed."""
    sd, fused = {}, {}
    for key, value in text_encoder_2.state_dict().items():
        key = key.removeprefix("text_model.")  # transformers 4 and 5 differ in that level
        if key == "embeddings.position_ids":
            continue  # a buffer, not a weight
        if key == "text_projection.weight":
            sd["text_projection"] = value.T
        elif key in OPEN_CLIP_FIXED:
            sd[OPEN_CLIP_FIXED[key]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key):
            fused.setdefault((m[1], m[3]), {})[m[2]] = value
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)$", key):
            renamed = _prefix_swap(m[2], OPEN_CLIP_LAYER)
            if renamed is None:
                raise KeyError(f"no open_clip name for text encoder weight {key!r}")
            sd[f"transformer.resblocks.{m[1]}.{renamed}"] = value
        else:
            raise KeyError(f"no open_clip name for text encoder weight {key!r}")
    for (layer, kind), qkv in fused.items():
        sd[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]])
    return sd


def _ldm_vae(vae: AutoencoderKL, prefix: str) -> dict[str, torch.Tensor]:
    n = len(vae.config.block_out_channels)
    sd = {}
    for key, value in vae.state_dict().items():
        new = vae_key(key, n)
        if ".attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention projections are 1×1 convolutions
        sd[prefix + new] = value
    return sd


def ldm_vae_state_dict(vae: AutoencoderKL, prefix: str = "") -> dict[str, torch.Tensor]:
    """The VAE's weights under LDM names, as a VAE-only file holds them (vae-ft-mse-840000-ema-pruned: no prefix)
    or with `prefix` (a whole checkpoint's `first_stage_model.`), as fresh contiguous tensors."""
    return {k: v.detach().clone().contiguous() for k, v in _ldm_vae(vae, prefix).items()}


def ldm_state_dict(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    text_model_level: bool = True,
    text_encoder_2: CLIPTextModelWithProjection | None = None,
) -> dict[str, torch.Tensor]:
    """The modules' weights under LDM names (SGM names with `text_encoder_2`, an SDXL's), as fresh contiguous
    tensors.

    text_model_level: CLIP keys as `cond_stage_model.transformer.text_model.*` (most files) or without that level
    (files saved with transformers < 4.22).
    """
    sd = {UNET_PREFIX + unet_key(k, unet): v for k, v in unet.state_dict().items()}
    sd.update(_ldm_vae(vae, VAE_PREFIX))
    level = "text_model." if text_model_level else ""
    prefix = TEXT_PREFIX if text_encoder_2 is None else SDXL_TEXT_PREFIX
    for key, value in text_encoder.state_dict().items():
        # transformers 4 names CLIP's weights `text_model.*`, transformers 5 drops that level.
        sd[f"{prefix}{level}{key.removeprefix('text_model.')}"] = value
    expected = len(unet.state_dict()) + len(vae.state_dict()) + len(text_encoder.state_dict())
    if text_encoder_2 is not None:
        second = open_clip_state_dict(text_encoder_2)
        sd.update({SDXL_TEXT_2_PREFIX + k: v for k, v in second.items()})
        expected += len(second)
    if len(sd) != expected:  # two weights renamed onto one name would silently drop one of them
        raise AssertionError(f"the LDM rename table merged weights: {expected} in, {len(sd)} out")
    # Cloned: state_dict tensors share storage with the modules (and tied weights with each other), which
    # safetensors refuses.
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def save_single_file(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    metadata: dict[str, str] | None = None,
    text_model_level: bool = True,
    text_encoder_2: CLIPTextModelWithProjection | None = None,
) -> Path:
    """Write the UNet, VAE and text encoder as one LDM-layout checkpoint (.safetensors, or a .ckpt pickle); with
    `text_encoder_2` (an SDXL's second text encoder), as an SDXL checkpoint in the SGM layout.

    dtype: cast floating-point weights to it (torch.float16 halves the file, as most downloaded models are);
    None keeps the modules' dtype. metadata goes into the safetensors header. The write is atomic: a reader
    never sees half a file, and an existing file is replaced only once the new one is complete.
    """
    sd = ldm_state_dict(unet, vae, text_encoder, text_model_level, text_encoder_2)
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return write_state_dict(path, sd, metadata)

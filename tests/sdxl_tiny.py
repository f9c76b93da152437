"""Tiny random SDXL-shaped components, built in code (no network): three levels, the first without attention and
the last with the deeper transformers, as SDXL's; two text encoders (the second with a pooled projection) and the
text-time addition."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModelWithProjection

from animatediff.models import MotionModuleConfig, MotionModules
from animatediff.pipeline import AnimationPipeline
from tests.tiny import official_scheduler, tiny_clip_config, tiny_text_encoder, tiny_tokenizer, tiny_vae

SDXL_CHANNELS = (32, 64, 64)
TIME_DIM = 8
PROJECTION = 32


def tiny_sdxl_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=SDXL_CHANNELS,
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        cross_attention_dim=64,  # the two encoders' widths joined: 32 + 32
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=TIME_DIM * 6 + PROJECTION,
        norm_num_groups=32,
    ).eval()


def tiny_text_encoder_2(vocab_size: int, seed: int = 4) -> CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(tiny_clip_config(vocab_size, projection_dim=PROJECTION)).eval()


def tiny_sdxl_motion(seed: int = 1) -> MotionModules:
    torch.manual_seed(seed)
    modules = MotionModules(MotionModuleConfig(block_out_channels=SDXL_CHANNELS, layers_per_block=2))
    with torch.no_grad():
        for p in modules.parameters():
            p.normal_(0, 0.2)
    return modules.eval()


def tiny_sdxl_pipeline(tmp_path: Path) -> AnimationPipeline:
    """Our pipeline over a tiny SDXL (the base's traits as an SDXL folder states them)."""
    folder = tiny_sdxl_folder(tmp_path / "sdxl")
    return AnimationPipeline.from_pretrained(folder, tiny_sdxl_motion())


def tiny_sdxl_folder(folder: Path, force_zeros: bool = True) -> Path:
    """A tiny SDXL in the diffusers folder layout, model_index.json included."""
    tokenizer = tiny_tokenizer(_made(folder / "vocab"))
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer.save_pretrained(folder / name)
    tiny_text_encoder(len(tokenizer)).save_pretrained(folder / "text_encoder")
    tiny_text_encoder_2(len(tokenizer)).save_pretrained(folder / "text_encoder_2")
    tiny_vae().save_pretrained(folder / "vae")
    tiny_sdxl_unet().save_pretrained(folder / "unet")
    official_scheduler().save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": force_zeros}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def sdxl_image_parts(pipe: AnimationPipeline) -> dict:
    """Our SDXL pipeline's parts under the names diffusers' SDXL image pipelines take, its 2-D UNet for theirs."""
    names = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    return {**{name: getattr(pipe, name) for name in names}, "unet": pipe.unet.unet}

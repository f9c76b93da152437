"""The world's tiny Stable Diffusion 1.x: the same diffusers/transformers classes and folder layout as SD1.5.

The default sizes are the shipped build's: a VAE with channels (32, 64, 64), so latents are 4 × H/4 × W/4 (8 × 8 at
32 px); a UNet with channels (64, 128), one layer per block, 8 heads, cross-attention 64 in every block but the
deepest, as SD; a small CLIP text encoder. Channel counts are multiples of 32 and heads 8, as motion modules need
(GroupNorm with 32 groups, 8 attention heads), so the project's motion modules fit this UNet unchanged.
`unet_attention` places attention per block, for UNets too wide at the top level to afford it there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from animatediff.models import MotionModuleConfig
from animatediff.sampling.schedulers import OFFICIAL_SCHEDULER_CONFIG
from animatediff.world.tokenizer import write_clip_files


@dataclass(frozen=True)
class BaseModelConfig:
    """Sizes of the world's SD1.x components."""

    resolution: int = 32
    """Image side in pixels the model is trained at."""
    vae_channels: tuple[int, ...] = (32, 64, 64)
    """VAE block widths; n blocks downsample by 2^(n-1)."""
    vae_layers: int = 1
    """ResNet layers per VAE block."""
    latent_channels: int = 4
    """Latent channels (4, as in SD)."""
    unet_channels: tuple[int, ...] = (64, 128)
    """UNet block widths."""
    unet_attention: tuple[bool, ...] | None = None
    """Which blocks have (self- and cross-) attention, one flag per block; None: every block but the deepest,
    as in SD. The mid block always has it."""
    unet_layers: int = 1
    """ResNet layers per UNet down block (up blocks get one more, as diffusers builds them)."""
    attention_heads: int = 8
    """Spatial attention heads (diffusers' `attention_head_dim` counts heads for SD1.x UNets)."""
    norm_groups: int = 32
    """GroupNorm groups in the VAE and UNet; the channel counts must divide by it."""
    text_width: int = 64
    """Text-encoder width, which is also the UNet's cross-attention dimension."""
    text_layers: int = 2
    """Text-encoder transformer layers."""
    text_heads: int = 4
    """Text-encoder attention heads."""

    def __post_init__(self) -> None:
        for name, channels in (("vae_channels", self.vae_channels), ("unet_channels", self.unet_channels)):
            if not channels or any(c % self.norm_groups for c in channels):
                raise ValueError(f"{name} {channels} must all be multiples of norm_groups {self.norm_groups}")
        if any(c % self.attention_heads for c in self.unet_channels):
            raise ValueError(
                f"unet_channels {self.unet_channels} must divide by attention_heads {self.attention_heads}"
            )
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} must divide by text_heads {self.text_heads}")
        if self.unet_attention is not None and len(self.unet_attention) != len(self.unet_channels):
            raise ValueError(
                f"unet_attention {self.unet_attention} needs one flag per UNet block ({len(self.unet_channels)})"
            )
        multiple = self.vae_factor * 2 ** (len(self.unet_channels) - 1)
        if self.resolution % multiple:
            raise ValueError(f"resolution {self.resolution} must be a multiple of {multiple} for these block counts")

    @property
    def attention_blocks(self) -> tuple[bool, ...]:
        n = len(self.unet_channels)
        return self.unet_attention if self.unet_attention is not None else (True,) * (n - 1) + (False,)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.vae_factor


def build_vae(cfg: BaseModelConfig = BaseModelConfig(), seed: int = 0) -> AutoencoderKL:
    """A fresh AutoencoderKL; its `scaling_factor` is set after training, from the latents' spread."""
    torch.manual_seed(seed)
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=cfg.vae_layers,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_groups,
        sample_size=cfg.resolution,
    )


def build_unet(cfg: BaseModelConfig = BaseModelConfig(), seed: int = 0) -> UNet2DConditionModel:
    """A fresh SD1.x-style UNet2DConditionModel (cross-attention in the blocks `cfg.unet_attention` names)."""
    torch.manual_seed(seed)
    attention = cfg.attention_blocks
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        cross_attention_dim=cfg.text_width,
        attention_head_dim=cfg.attention_heads,
        norm_num_groups=cfg.norm_groups,
    )


def build_text_encoder(
    tokenizer: CLIPTokenizer, cfg: BaseModelConfig = BaseModelConfig(), seed: int = 0
) -> CLIPTextModel:
    """A fresh CLIPTextModel for `tokenizer`'s vocabulary (77 positions, causal, as SD's)."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_width,
        intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def motion_module_config(cfg: BaseModelConfig = BaseModelConfig(), max_frames: int = 32) -> MotionModuleConfig:
    """The motion-module set that fits this UNet (v3-style: no mid-block module, per-frame norms)."""
    return MotionModuleConfig(
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers,
        num_attention_heads=cfg.attention_heads,
        max_frames=max_frames,
        norm_num_groups=cfg.norm_groups,
        version="v3",
    )


def official_scheduler(zero_terminal_snr: bool = False) -> DDIMScheduler:
    """DDIM with AnimateDiff's linear betas: what the world's models are trained and sampled with. With
    `zero_terminal_snr`, the betas rescaled so that the last timestep keeps no signal (Lin et al. 2024), which
    needs v-prediction and is sampled from that last timestep on ("trailing" spacing)."""
    if not zero_terminal_snr:
        return DDIMScheduler(**OFFICIAL_SCHEDULER_CONFIG)
    return DDIMScheduler(
        **OFFICIAL_SCHEDULER_CONFIG,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )


def save_base_folder(
    folder: str | os.PathLike,
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    vae: AutoencoderKL,
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler | None = None,
) -> Path:
    """Write an SD1.5-layout folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json).

    diffusers' own `save_pretrained` writes it, so the layout and model_index.json are exactly what
    `StableDiffusionPipeline.from_pretrained` expects; weights go out as safetensors. The tokenizer also gets
    CLIP's vocab.json and merges.txt, which transformers 5 no longer writes.
    """
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise ValueError(
            f"UNet cross-attention dim {unet.config.cross_attention_dim} does not match the text encoder's "
            f"width {text_encoder.config.hidden_size}"
        )
    if text_encoder.config.vocab_size != len(tokenizer):
        raise ValueError(f"text encoder vocabulary {text_encoder.config.vocab_size} != tokenizer's {len(tokenizer)}")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler or official_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    write_clip_files(tokenizer, folder / "tokenizer")
    return folder

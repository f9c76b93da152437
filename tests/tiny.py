"""Tiny random SD1.x-shaped components, built in code (no network)."""

from __future__ import annotations

import json

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from animatediff.models import MotionModuleConfig, MotionModules

CHANNELS = (32, 64)


def tiny_unet(seed: int = 0, channels: tuple[int, ...] = CHANNELS) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    n = len(channels)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def tiny_motion(
    version: str = "v3", seed: int = 1, random: bool = True, channels: tuple[int, ...] = CHANNELS
) -> MotionModules:
    cfg = MotionModuleConfig(
        block_out_channels=channels,
        layers_per_block=2,
        use_mid_block=version == "v2",
        max_frames=24 if version == "v1" else 32,
        version=version,
    )
    torch.manual_seed(seed)
    mm = MotionModules(cfg)
    if random:
        with torch.no_grad():
            for p in mm.parameters():
                p.normal_(0, 0.2)
    return mm.eval()


def tiny_vae(seed: int = 2) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 32),
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=16,
    ).eval()


def tiny_tokenizer(tmp_path) -> CLIPTokenizer:
    """A CLIP tokenizer from an in-memory byte-level vocabulary with no merges."""
    # GPT-2's byte-to-printable-character table, the alphabet CLIP's BPE works on.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)


def tiny_clip_config(vocab_size: int, **extra) -> CLIPTextConfig:
    """A 2-layer, 32-wide CLIP text config over the tiny tokenizer's vocabulary."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        **extra,
    )


def tiny_text_encoder(vocab_size: int, seed: int = 3) -> CLIPTextModel:
    torch.manual_seed(seed)
    return CLIPTextModel(tiny_clip_config(vocab_size)).eval()


def official_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1, clip_sample=False)

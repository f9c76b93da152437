"""Single-file SD1.x checkpoints (CivitAI / original LDM key layout) applied on top of a diffusers base folder.

A personalized model file holds the whole image model under the original CompVis names:
`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.transformer.*` (CLIP text encoder).
The official AnimateDiff loads it over the base SD1.5 folder, replacing all three. We do the same: the base folder's
already-built modules supply the configs (so nothing is fetched), diffusers' single-file conversion functions
(`diffusers.loaders.single_file_utils`) rename the keys, and the weights load strictly. SDXL files load the same way
over an SDXL base (`single_file_sdxl`); `checkpoint_family` tells the families apart from the key names and the
UNet's cross-attention width, so a file of the other family, SD2 or an SDXL refiner is refused in one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModel

from animatediff.errors import InputError
from animatediff.formats.state_dicts import read_state_dict
from animatediff.hub import resolve_path

UNET_PREFIX = "model.diffusion_model."
CROSS_ATTN_KEY = UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
CONV_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
KNOWN_CROSS_DIMS = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
FAMILY_NAMES = {"sd1": "SD1.x", "sdxl": "SDXL"}
_CROSS_KEY = re.compile(r"^model\.diffusion_model\..*\.attn2\.to_k\.weight$")
# Entries of a text-encoder state dict that are buffers, recomputed by the model, not weights.
IGNORED_TEXT_KEYS = ("embeddings.position_ids",)


def read_single_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a single-file checkpoint, unwrapped from `{"state_dict": …}` as LDM training saved them."""
    sd, _ = read_state_dict(resolve_path(path, "personalized model"))
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def cross_width(shapes: Mapping[str, object]) -> int | None:
    """The width of the text a single-file UNet attends to (its cross-attention keys' input), or None."""
    for key, value in shapes.items():
        if _CROSS_KEY.match(key):
            return int(_shape(value)[1])
    return None


def _shape(value: object) -> Sequence[int]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def checkpoint_family(shapes: Mapping[str, object]) -> tuple[str, str]:
    """(family, what shows it) of a single-file checkpoint from its key names and its UNet's text width:
    'sd1', 'sd2', 'sdxl', 'sdxl-refiner', or 'unknown'. `shapes`: key → tensor or shape (a header is enough)."""
    width = cross_width(shapes)
    wide = f"{width}-wide text, " if width else ""
    if any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        return "sdxl-refiner", f"{wide}only the OpenCLIP ViT-bigG text encoder, conditioner.embedders.0.model.*"
    if any(k.startswith("conditioner.embedders.") for k in shapes):
        return "sdxl", f"{wide}two text encoders, conditioner.embedders.*"
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        return "sd2", f"{wide}OpenCLIP ViT-H text encoder, cond_stage_model.model.*"
    if any(k.startswith("cond_stage_model.transformer.") for k in shapes):
        return "sd1", f"{wide}CLIP ViT-L text encoder, cond_stage_model.transformer.*"
    by_width = {768: "sd1", 1024: "sd2", 1280: "sdxl-refiner", 2048: "sdxl"}
    return by_width.get(width, "unknown"), f"{width}-wide text"


def check_checkpoint_family(shapes: Mapping[str, object], base_family: str, name: str = "checkpoint") -> None:
    """One line when a single-file checkpoint is not for a base of `base_family` ('sd1' or 'sdxl')."""
    family, evidence = checkpoint_family(shapes)
    base = FAMILY_NAMES[base_family]
    if family == "sdxl-refiner":
        raise InputError(
            f"{name} is an SDXL refiner checkpoint ({evidence}, with an aesthetic-score embedding), not supported: "
            "a refiner only refines a base's images; use an SDXL base checkpoint"
        )
    if family == "sd2":
        raise InputError(f"{name} is an SD2.x checkpoint ({evidence}); AnimateDiff animates SD1.x and SDXL")
    if family in FAMILY_NAMES and family != base_family:
        found = FAMILY_NAMES[family]
        raise InputError(
            f"{name} is an {found} checkpoint ({evidence}) but the base is {base}; "
            f"use an {found} base with it, or an {base} checkpoint"
        )


def adapter_kind(sd: Mapping[str, object]) -> str | None:
    """What a weights file holds where its key names show an adapter: 'a LoRA (use --lora)' or 'a motion module
    (use --motion-module)'; else None."""
    if any(".lora_down." in k or ".lora_A." in k or "_lora." in k for k in sd):
        return "a LoRA (use --lora)"
    if any(".motion_modules." in k for k in sd):
        return "a motion module (use --motion-module)"
    return None


def check_has_unet(sd: Mapping[str, object], name: str = "checkpoint") -> None:
    """One line for a file with no single-file UNet in it, saying what it looks like instead."""
    if not any(k.startswith(UNET_PREFIX) for k in sd):
        what = adapter_kind(sd)
        if what is None and any(k.startswith(("down_blocks.", "unet.")) for k in sd):
            what = "diffusers-named weights (pass a diffusers folder as --base)"
        what = what or f"something else (first key {next(iter(sd), None)!r})"
        raise InputError(f"{name} has no '{UNET_PREFIX}*' weights: not a single-file SD checkpoint but {what}")


def check_sd1_checkpoint(sd: dict[str, torch.Tensor], unet: UNet2DConditionModel, name: str = "checkpoint") -> None:
    """Refuse what is not an SD1.x-family LDM checkpoint for this base, saying what it looks like instead."""
    check_checkpoint_family(sd, "sd1", name)
    check_has_unet(sd, name)
    if CROSS_ATTN_KEY in sd:
        dim = sd[CROSS_ATTN_KEY].shape[1]
        expected = unet.config.cross_attention_dim
        if dim != expected:
            family = KNOWN_CROSS_DIMS.get(dim, "another model family")
            raise InputError(
                f"{name}: cross-attention dimension {dim} ({family}), but the base UNet expects {expected} "
                f"({KNOWN_CROSS_DIMS.get(expected, 'this base')}); use an SD1.x checkpoint"
            )
    if CONV_IN_KEY in sd and sd[CONV_IN_KEY].shape[1] != unet.config.in_channels:
        channels = sd[CONV_IN_KEY].shape[1]
        kind = " (an inpainting model)" if channels == 9 else ""
        raise InputError(
            f"{name}: UNet takes {channels} input channels{kind}, the base expects {unet.config.in_channels}"
        )


def _load_strict(module: nn.Module, sd: dict[str, torch.Tensor], part: str, name: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise InputError(
            f"{name}: the {part} weights do not match the base model's {part}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in sd.items() if v.shape != expected[k].shape
    ]
    if wrong:
        raise InputError(f"{name}: {len(wrong)} {part} weights have other shapes than the base's, e.g. {wrong[:2]}")
    module.load_state_dict(sd, strict=True)


def convert_single_file(
    sd: dict[str, torch.Tensor], unet: UNet2DConditionModel, vae: AutoencoderKL
) -> dict[str, dict[str, torch.Tensor]]:
    """LDM-layout tensors → diffusers-named state dicts {'unet', 'vae', 'text_encoder'} (configs from the base)."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    text = convert_ldm_clip_checkpoint(sd)
    # transformers 5 names CLIP's weights without the `text_model.` level that SD files (and transformers 4) use.
    text = {
        k.removeprefix("text_model."): v
        for k, v in text.items()
        if k.removeprefix("text_model.") not in IGNORED_TEXT_KEYS
    }
    return {
        "unet": convert_ldm_unet_checkpoint(sd, dict(unet.config)),
        "vae": convert_ldm_vae_checkpoint(sd, dict(vae.config)),
        "text_encoder": text,
    }


@torch.no_grad()
def load_single_file_weights(
    path: str | os.PathLike, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel
) -> list[str]:
    """Replace the base model's UNet, VAE and text-encoder weights with those of a single-file SD1.x checkpoint.

    A file without any VAE or text-encoder weights (some are saved UNet-only or without a baked VAE) keeps the
    base's part; a part that is there must be complete. Returns the parts replaced.
    """
    name = os.fspath(path)
    sd = read_single_file(path)
    check_sd1_checkpoint(sd, unet, name)
    converted = convert_single_file(sd, unet, vae)
    replaced = []
    for part, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        if part != "unet" and not converted[part]:
            continue
        _load_strict(module, converted[part], part, name)
        replaced.append(part)
    return replaced

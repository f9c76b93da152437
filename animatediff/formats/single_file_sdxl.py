"""Single-file SDXL checkpoints (CivitAI / Stability's SGM key layout) laid over a diffusers SDXL base folder.

An SDXL file holds the whole image model under the names of Stability's generative-models (`sgm/`):
`model.diffusion_model.*` (the UNet: `input_blocks` / `middle_block` / `output_blocks`, plus `label_emb`, the size
and pooled-text embedding), `first_stage_model.*` (the VAE, as SD1's), `conditioner.embedders.0.transformer.*` (CLIP
ViT-L in transformers' names) and `conditioner.embedders.1.model.*` (OpenCLIP ViT-bigG in open_clip's names: q/k/v
fused into `in_proj_weight`, `text_projection` applied as `x @ P`). As for SD1 files (`single_file`), the base's
already-built modules supply the configs (nothing is fetched) and diffusers' conversion functions
(`diffusers.loaders.single_file_utils`: `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
`convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`, which splits the fused q/k/v and transposes the
projection) rename the keys; every part loads strictly.

`check_single_file` reads a .safetensors file's header alone (names and shapes), so a file of the other family, an
SD2 file or an SDXL refiner is refused in one line before the base's weights load.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextModelWithProjection

from animatediff.errors import InputError
from animatediff.formats.single_file import (
    IGNORED_TEXT_KEYS,
    KNOWN_CROSS_DIMS,
    _load_strict,
    check_checkpoint_family,
    check_has_unet,
    cross_width,
    read_single_file,
)
from animatediff.formats.state_dicts import read_state_dict
from animatediff.hub import resolve_path

if TYPE_CHECKING:
    from animatediff.base_model import BaseModel

UNET_PREFIX = "model.diffusion_model."
TEXT_PREFIX = "conditioner.embedders.0.transformer."
TEXT_2_PREFIX = "conditioner.embedders.1.model."
CONV_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
ADDED_KEY = UNET_PREFIX + "label_emb.0.0.weight"
PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def header_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]] | None:
    """{key: shape} from a .safetensors header (no tensor read); None for a torch pickle, read whole later."""
    file = resolve_path(path, "personalized model")
    if file.suffix != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception:  # noqa: BLE001 - the full read says what is wrong with the file, in one line
        read_state_dict(file)
        raise


def check_single_file(path: str | os.PathLike, base_family: str) -> None:
    """Refuse a single file of the wrong family (or SD2, or an SDXL refiner) from its header alone, before any
    weight loads; a torch pickle is checked once it is read."""
    shapes = header_shapes(path)
    if shapes is not None:
        check_checkpoint_family(shapes, base_family, os.fspath(path))
        check_has_unet(shapes, os.fspath(path))


def check_sdxl_checkpoint(sd: dict[str, torch.Tensor], unet: UNet2DConditionModel, name: str = "checkpoint") -> None:
    """Refuse what is not an SDXL base checkpoint for this base UNet, in one line."""
    check_checkpoint_family(sd, "sdxl", name)
    check_has_unet(sd, name)
    width, expected = cross_width(sd), unet.config.cross_attention_dim
    if width is not None and width != expected:
        found = KNOWN_CROSS_DIMS.get(width, "another model")
        raise InputError(f"{name}: the UNet attends to {width}-wide text ({found}), the base SDXL's to {expected}")
    if CONV_IN_KEY in sd and sd[CONV_IN_KEY].shape[1] != unet.config.in_channels:
        channels = sd[CONV_IN_KEY].shape[1]
        kind = " (an inpainting model)" if channels == 9 else ""
        raise InputError(
            f"{name}: UNet takes {channels} input channels{kind}, the base expects {unet.config.in_channels}"
        )
    added = unet.add_embedding.linear_1.in_features if getattr(unet, "add_embedding", None) is not None else None
    if ADDED_KEY in sd and added is not None and sd[ADDED_KEY].shape[1] != added:
        raise InputError(
            f"{name}: its size/pooled-text embedding takes {sd[ADDED_KEY].shape[1]} values, the base's {added} "
            "(a refiner's or another SDXL variant's UNet)"
        )


def _text_names(sd: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Converted CLIP names fitted to the module's own: transformers 4 named every weight `text_model.*`,
    transformers 5 keeps that level in CLIPTextModelWithProjection only; buffers dropped."""
    own = module.state_dict()
    fitted = {}
    for key, value in sd.items():
        bare = key.removeprefix("text_model.")
        if bare in IGNORED_TEXT_KEYS:
            continue
        fitted[bare if bare in own else f"text_model.{bare}" if f"text_model.{bare}" in own else key] = value
    return fitted


def convert_sdxl_single_file(
    sd: dict[str, torch.Tensor],
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: nn.Module,
    text_encoder_2: CLIPTextModelWithProjection,
) -> dict[str, dict[str, torch.Tensor]]:
    """SGM-layout tensors → diffusers-named state dicts {'unet', 'vae', 'text_encoder', 'text_encoder_2'} (a part
    the file lacks comes back empty); configs from the base's modules."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    first = {k: v for k, v in sd.items() if k.startswith(TEXT_PREFIX)}
    second = {k: v for k, v in sd.items() if k.startswith(TEXT_2_PREFIX)}
    return {
        "unet": convert_ldm_unet_checkpoint(sd, dict(unet.config)),
        "vae": convert_ldm_vae_checkpoint(sd, dict(vae.config)),
        "text_encoder": _text_names(convert_ldm_clip_checkpoint(first), text_encoder) if first else {},
        "text_encoder_2": (
            _text_names(convert_open_clip_checkpoint(text_encoder_2, second, prefix=TEXT_2_PREFIX), text_encoder_2)
            if second
            else {}
        ),
    }


@torch.no_grad()
def load_sdxl_single_file_weights(path: str | os.PathLike, base: BaseModel) -> list[str]:
    """Replace an SDXL base's UNet, VAE and both text encoders' weights with those of a single-file SDXL
    checkpoint. A file without VAE or text-encoder weights keeps the base's part; a part that is there must be
    complete. Returns the parts replaced."""
    name = os.fspath(path)
    if base.text_encoder_2 is None:
        raise InputError(f"{name}: an SDXL checkpoint needs an SDXL base (with text_encoder_2/)")
    sd = read_single_file(path)
    check_sdxl_checkpoint(sd, base.unet, name)
    converted = convert_sdxl_single_file(sd, base.unet, base.vae, base.text_encoder, base.text_encoder_2)
    replaced = []
    for part in PARTS:
        if part != "unet" and not converted[part]:
            continue
        _load_strict(getattr(base, part), converted[part], part, name)
        replaced.append(part)
    return replaced

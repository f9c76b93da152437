"""Which base family (SD1.x or SDXL) a LoRA is for, and the SGM module names kohya's SDXL LoRAs use.

- kohya's sd-scripts train SDXL on Stability's own UNet (`library/sdxl_original_unet.py`), so its SDXL LoRAs name
  the UNet's modules in the SGM/LDM layout: `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`,
  `lora_unet_middle_block_1_proj_in`, `lora_unet_output_blocks_2_2_conv` (LoCon), with `lora_te1_` / `lora_te2_` for
  the two text encoders (transformers names). `sgm_module_names` gives each module of a diffusers SDXL UNet its SGM
  name from the hand-written LDM rename table (`ldm_export.unet_key`), so those keys resolve against the model in
  hand, LoCon resnets, down/upsamplers and `label_emb` included.
- diffusers / PEFT SDXL LoRAs name the modules as diffusers does, under `unet.`, `text_encoder.`, `text_encoder_2.`.

`check_lora_family` refuses, in one line and before anything merges, a LoRA whose family differs from the base's: an
SDXL LoRA (second-text-encoder layers, or cross-attention reading 2048-wide text) on an SD1.x base, an SD1.x LoRA
(768-wide text) on SDXL, and SD2 LoRAs (1024-wide text) on either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from torch import nn

from animatediff.errors import InputError
from animatediff.formats.ldm_export import unet_key

if TYPE_CHECKING:
    from animatediff.formats.lora import Lora

FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
TEXT_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
"""The text width each family's UNet attends to (its cross-attention keys and values read it)."""
_CROSS = re.compile(r"attn2[._]to_[kv]$")


def is_sdxl_unet(unet: nn.Module) -> bool:
    """An SDXL UNet: conditioned on pooled text and size ids (diffusers' `addition_embed_type='text_time'`)."""
    return getattr(getattr(unet, "config", None), "addition_embed_type", None) == "text_time"


def sgm_module_names(unet: nn.Module) -> dict[str, str]:
    """{SGM module path: diffusers module path} for every module of a diffusers UNet that has a weight."""
    names = {}
    for name, module in unet.named_modules():
        if isinstance(getattr(module, "weight", None), nn.Parameter):
            try:
                names[unet_key(f"{name}.weight", unet).removesuffix(".weight")] = name
            except KeyError:  # a module outside the image UNet's own layout (none in diffusers' UNet)
                continue
    return names


def lora_family(lora: Lora) -> tuple[str | None, str]:
    """(family or None when the LoRA does not show it, what shows it)."""
    if any(layer.component == "text_encoder_2" for layer in lora.layers):
        return "sdxl", "it has text_encoder_2 / lora_te2 keys"
    for layer in lora.layers:
        if layer.component == "unet" and _CROSS.search(layer.target) and layer.down.ndim == 2:
            width = int(layer.down.shape[1])
            if width in TEXT_WIDTHS:
                return TEXT_WIDTHS[width], f"its cross-attention reads {width}-wide text"
            return None, ""
    return None, ""


def base_family(components: Mapping[str, nn.Module]) -> str:
    """'sdxl' for a pipeline with a second text encoder or an SDXL UNet, else 'sd1'."""
    sdxl = "text_encoder_2" in components or is_sdxl_unet(components.get("unet"))
    return "sdxl" if sdxl else "sd1"


def check_lora_family(lora: Lora, components: Mapping[str, nn.Module]) -> None:
    """One line when `lora` is for another family than the models it would merge into."""
    family, evidence = lora_family(lora)
    base = base_family(components)
    if family is None or family == base:
        return
    if family == "sd2":
        raise InputError(f"{lora.name} is an SD2.x LoRA ({evidence}); AnimateDiff animates SD1.x and SDXL")
    found, expected = FAMILY_NAMES[family], FAMILY_NAMES[base]
    raise InputError(
        f"{lora.name} is an {found} LoRA ({evidence}) but the base is {expected}; "
        f"use an {expected} LoRA, or an {found} base with it"
    )

"""An IP-Adapter's scale: one number for every image attention, or per block of the UNet in diffusers' layer-wise
form (`set_ip_adapter_scale`), as InstantStyle (Wang et al. 2024, arXiv 2404.02733) uses it to take only a picture's
style or only its layout:

    {"down": {"block_2": [0.0, 1.0]}, "mid": 0.0, "up": {"block_0": [0.0, 1.0, 0.0]}}

`down` and `up` take a number for all their blocks, one per transformer of each block, or {block_i: a number, or one
per transformer of the block}; `mid` a number. Parts and blocks not named are 0 (diffusers' default): the image
attention acts only where named. Which blocks carry style and which layout depends on the base (InstantStyle names
SDXL's `up` block_0's second transformer for style and `down` block_2's second for layout).

The form is checked here before any model loads; that the blocks it names hold attention in the base's UNet once
the IP-Adapter is loaded (`check_scale_blocks`: diffusers passes over such a block without a word), and the number
of transformers as the scale is set (`models/ip_adapter.IPAdapterLayers`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import yaml

from animatediff.errors import InputError, non_negative

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

PARTS = ("down", "mid", "up")
HINT = "0: no image prompt, 1: as trained"
EXAMPLE = "{up: {block_1: [0, 1, 0]}}"


def check_ip_scale(scale: object, name: str = "IP-Adapter scale") -> float | dict:
    """`scale` as a float (a finite number ≥ 0) or as a checked layer-wise mapping (module docstring); an
    InputError naming `name` otherwise."""
    if not isinstance(scale, Mapping):
        return non_negative(scale, name, HINT)
    if not scale:
        raise InputError(f"{name}: an empty mapping; give a number or the parts it acts in, e.g. {EXAMPLE}")
    checked: dict = {}
    for part, value in scale.items():
        if part not in PARTS:
            raise InputError(f"{name}: unknown part {part!r}; the parts are down, mid and up")
        where = f"{name} {part}"
        if part == "mid" or not isinstance(value, Mapping):
            checked[part] = _numbers(value, where, part != "mid")
            continue
        blocks = {}
        for block, numbers in value.items():
            if not isinstance(block, str) or not re.fullmatch(r"block_\d+", block):
                raise InputError(f"{where}: {block!r} is not a block name (block_0, block_1, …)")
            blocks[block] = _numbers(numbers, f"{where} {block}", True)
        checked[part] = blocks
    return checked


def _numbers(value: object, where: str, lists: bool) -> float | list[float]:
    """A number ≥ 0, or with `lists` a non-empty list of them (one per transformer of a block)."""
    if isinstance(value, list) and lists:
        if not value:
            raise InputError(f"{where}: an empty list; give a number, or one per transformer of the block")
        return [non_negative(v, where, HINT) for v in value]
    return non_negative(value, where, HINT)


def parse_ip_scale(text: str, name: str) -> float | dict:
    """A command-line scale: a number, or the layer-wise mapping written as YAML ('{up: {block_1: [0, 1, 0]}}')."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, (float, Mapping)):
        raise InputError(f"{name} {text!r}: give a number ≥ 0, or the blocks it acts in, e.g. '{EXAMPLE}'")
    return check_ip_scale(value, name)


def check_scale_blocks(scale: float | dict, unet: UNet2DConditionModel, name: str = "IP-Adapter scale") -> None:
    """One line for a block named in a layer-wise `scale` that holds no attention in `unet` (or is past its
    blocks)."""
    if not isinstance(scale, Mapping):
        return
    for part in ("down", "up"):
        blocks = scale.get(part)
        if not isinstance(blocks, Mapping):
            continue
        held = [i for i, block in enumerate(getattr(unet, f"{part}_blocks")) if getattr(block, "attentions", None)]
        for block in blocks:
            if int(block.split("_")[1]) not in held:
                named = ", ".join(f"block_{i}" for i in held)
                raise InputError(
                    f"{name} {part} {block}: no attention there in this base's UNet; its {part} blocks with "
                    f"attention: {named}"
                )

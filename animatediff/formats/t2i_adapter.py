"""T2I-Adapter single files (`formats/controlnet.load_controlnet` hands them here): TencentARC's original layout,
the `.pth`/`.safetensors` files the A1111 ControlNet extension and ComfyUI load (`t2iadapter_canny_sd15v2.pth`,
`t2iadapter_color_sd14v1.pth`), and the same adapters in diffusers' key names, loaded into a diffusers `T2IAdapter`
(`pipeline/t2i_adapter.py` applies it).

The original layout has two forms, both for SD1.x (images 8× the latents, as PixelUnshuffle(8) makes them):
- the full adapter: `conv_in`, then `body.K` for K = level × blocks + block, each `block1` (3×3), `block2` (1×1)
  and, where the width changes, `in_conv` (1×1); downsampling by average pooling at each level after the first.
  diffusers' `full_adapter` is the same network (`adapter.body.LEVEL.resnets.BLOCK.*`, `adapter.body.LEVEL.in_conv`).
- the light adapter (color): `body.LEVEL.in_conv`, `body.LEVEL.body.BLOCK.block1/block2`, `body.LEVEL.out_conv`,
  diffusers' `light_adapter` (`adapter.body.LEVEL.resnets.BLOCK.*`), whose config names the levels but the last,
  which repeats the one before.
The config is read off the shapes: the levels' widths, the blocks per level, the image channels (the first
convolution's inputs over 8²). Other forms (3×3 `block2` with `skep` shortcuts, strided-convolution downsampling, the
style adapter, SDXL's adapters, whose images are 16× the latents) are one line; an SDXL adapter loads from its
diffusers folder. Nothing is fetched; pickles are read weights-only by the caller (`state_dicts.read_state_dict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from diffusers import T2IAdapter

from animatediff.errors import InputError

FACTOR = 8
"""Pixels per latent of SD1.x's VAE: the original adapters' PixelUnshuffle."""


def is_t2i_adapter_state_dict(sd: Mapping[str, object]) -> bool:
    """Whether a single file's entries are a T2I-Adapter's (original or diffusers names), rather than a
    ControlNet's."""
    return any(str(k).startswith(("adapter.body.", "body.")) for k in sd) or "style_embedding" in sd


def _diffusers_names(sd: Mapping[str, torch.Tensor], light: bool, blocks: int) -> dict[str, torch.Tensor]:
    """The original layout's entries under diffusers' names (`blocks`: per level, by which the full adapter's flat
    `body.K` is a level's block); an entry of no known place keeps its name, for the strict load to name it."""
    out = {}
    for key, value in sd.items():
        name = key
        if key.startswith("conv_in."):
            name = f"adapter.{key}"
        elif light and (m := re.match(r"body\.(\d+)\.body\.(\d+)\.(.+)$", key)):
            name = f"adapter.body.{m[1]}.resnets.{m[2]}.{m[3]}"
        elif light and (m := re.match(r"body\.(\d+)\.((?:in|out)_conv\..+)$", key)):
            name = f"adapter.body.{m[1]}.{m[2]}"
        elif not light and (m := re.match(r"body\.(\d+)\.(block[12]|in_conv)\.(.+)$", key)):
            level, block = divmod(int(m[1]), blocks)
            if m[2] != "in_conv":
                name = f"adapter.body.{level}.resnets.{block}.{m[2]}.{m[3]}"
            elif block == 0:  # a level's first block changes the width
                name = f"adapter.body.{level}.in_conv.{m[3]}"
        out[name] = value
    return out


def _refused_form(sd: Mapping[str, object], name: str) -> None:
    if "style_embedding" in sd:
        raise InputError(f"{name} is a T2I style adapter (CLIP image tokens), not supported: use an IP-Adapter")
    odd = next((k for k in sd if re.search(r"\.(skep|down_opt\.op)\.", str(k))), None)
    if odd is not None:
        raise InputError(
            f"{name}: a T2I-Adapter of a form diffusers' T2IAdapter does not hold ({odd!r}): convert it to a "
            "diffusers folder"
        )


def t2i_adapter_from_state_dict(
    sd: Mapping[str, object], levels: int, name: str = "T2I-Adapter", dtype: torch.dtype | None = None
) -> T2IAdapter:
    """A diffusers `T2IAdapter` from a single file's entries (module docstring) for a base of `levels` down blocks;
    `dtype`: None keeps the file's floating type. What does not fit is one line."""
    tensors = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    _refused_form(tensors, name)
    weights = tensors
    if not any(k.startswith("adapter.") for k in tensors):  # the original layout
        light = "body.0.out_conv.weight" in tensors
        count = len({m[1] for k in tensors if (m := re.match(r"body\.(\d+)\.block1\.weight$", k))})
        weights = _diffusers_names(tensors, light, max(count // levels, 1))
    light = "adapter.body.0.out_conv.weight" in weights
    first = weights.get("adapter.body.0.in_conv.weight" if light else "adapter.conv_in.weight")
    width_key = "adapter.body.{}.out_conv.weight" if light else "adapter.body.{}.resnets.0.block1.weight"
    widths = [weights[width_key.format(i)].shape[0] for i in range(levels) if width_key.format(i) in weights]
    blocks = len({m[1] for k in weights if (m := re.match(r"adapter\.body\.0\.resnets\.(\d+)\.block1\.", k))})
    if first is None or not blocks or len(widths) != levels:
        raise InputError(
            f"{name}: not a T2I-Adapter this loader reads ({levels} levels, as the base's down blocks, with "
            "conv_in and body.* weights); give its diffusers folder"
        )
    channels, rest = divmod(first.shape[1], FACTOR**2)
    if rest or channels not in (1, 3):
        raise InputError(
            f"{name}: its first convolution takes {first.shape[1]} inputs, not an SD1.x T2I-Adapter's 3 × 8² or "
            "1 × 8² (an SDXL adapter, 16× its latents, loads from its diffusers folder)"
        )
    if light and (len(widths) < 2 or widths[-1] != widths[-2]):
        raise InputError(f"{name}: a light T2I-Adapter whose last two levels differ ({widths}): diffusers' holds none")
    with torch.device("meta"):
        model = T2IAdapter(
            in_channels=channels,
            channels=widths[:-1] if light else widths,  # diffusers' light adapter repeats its last level
            num_res_blocks=blocks,
            downscale_factor=FACTOR,
            adapter_type="light_adapter" if light else "full_adapter",
        )
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    wrong = [k for k in set(expected) & set(weights) if weights[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise InputError(
            f"{name}: the T2I-Adapter weights do not fit the network their shapes describe: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of other shapes"
        )
    model.load_state_dict(weights, strict=True, assign=True)
    if dtype is not None:
        model.to(dtype)
    return model.eval().requires_grad_(False)

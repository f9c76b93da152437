"""Which layout a motion-module state dict is in, HotShot-XL's renamed onto ours, and what an unknown file holds.

HotShot-XL (github.com/hotshotco/Hotshot-XL, `hsxl_temporal_layers.safetensors`) names its temporal layers
`{down,up}_blocks.{i}.temporal_attentions.{j}.*` and their sinusoid `pos_encoder.positional_encoding`. Their math
is AnimateDiff's motion module term for term (`hotshot_xl/models/transformer_temporal.py`: a per-frame GroupNorm,
proj_in, blocks of two pre-norm temporal self-attentions with the sinusoid of length 24 added to their input and a
GEGLU feed-forward, proj_out, the residual), two per down block and three per up block of SDXL's three levels, no
mid block; its UNet's ResNets normalize over the whole clip (`hotshot_xl/models/resnet.py`), as v1's do. So a
HotShot-XL file loads as a v1-style SDXL motion module (max_frames 24, clip norms) after a rename.

The official layout has no field naming a module's design; the temporal convolution of the module-design ablation
(`models/temporal_conv.py`) is told by its own keys, `…motion_modules.{j}.temporal_convolution.*` (`design_of`).
"""

from __future__ import annotations

import re

import torch

from animatediff.errors import InputError

HOTSHOT_BLOCK = ".temporal_attentions."
HOTSHOT_PE = "pos_encoder.positional_encoding"
OFFICIAL_MODULE = re.compile(
    r"^(?:(?:down|up)_blocks\.\d+|mid_block)\.motion_modules\.\d+\.temporal_(?:transformer|convolution)\."
)
CONVOLUTION_KEY = re.compile(r"\.motion_modules\.\d+\.temporal_convolution\.")
HOTSHOT_MODULE = re.compile(r"^((?:down_blocks|up_blocks)\.\d+|mid_block)\.temporal_attentions\.(\d+)\.")
EXPECTED = (
    "official keys like 'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight', diffusers MotionAdapter "
    "keys like 'down_blocks.0.motion_modules.0.norm.weight', or HotShot-XL keys like "
    "'down_blocks.0.temporal_attentions.0.norm.weight'"
)


def is_hotshot(sd: dict[str, torch.Tensor]) -> bool:
    """Whether the keys are HotShot-XL's temporal layers (`*.temporal_attentions.*`)."""
    return any(HOTSHOT_MODULE.match(k) for k in sd)


def design_of(sd: dict[str, torch.Tensor]) -> str:
    """The design of official-layout modules, from their keys: 'convolution' where any module holds
    `temporal_convolution.*` weights, else 'transformer'. (A mixed set then fails the strict load, one line.)"""
    return "convolution" if any(CONVOLUTION_KEY.search(k) for k in sd) else "transformer"


def hotshot_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HotShot-XL's temporal layers under the official names; anything else a whole HotShot UNet holds is dropped."""
    out = {}
    for key, value in sd.items():
        if m := HOTSHOT_MODULE.match(key):
            rest = key[m.end() :].replace(HOTSHOT_PE, "pos_encoder.pe")
            out[f"{m.group(1)}.motion_modules.{m.group(2)}.temporal_transformer.{rest}"] = value
    return out


def check_known_layout(sd: dict[str, torch.Tensor], name: str, found: dict[str, torch.Tensor] | None = None) -> None:
    """Nothing if `sd` (renamed to the official layout) holds motion modules; otherwise an InputError naming what
    the file holds (`found`: its tensors before any rename)."""
    if any(OFFICIAL_MODULE.match(k) and "lora" not in k.lower() for k in sd):
        return
    keys = sorted(sd if found is None else found)
    if not keys:
        raise InputError(f"{name} holds no tensors; expected a motion module ({EXPECTED})")
    raise InputError(
        f"{name} is not a motion module in any layout read here: {len(keys)} tensors like {keys[:2]}"
        f"{_what_it_looks_like(keys)}; expected {EXPECTED}"
    )


def _what_it_looks_like(keys: list[str]) -> str:
    if any("lora" in k.lower() for k in keys):
        what = "a LoRA (a MotionLoRA goes to --motion-lora, an image LoRA to --lora, the v3 adapter to --adapter-lora)"
    elif any(k.startswith(("model.diffusion_model.", "conditioner.embedders.")) for k in keys):
        what = "a Stable Diffusion checkpoint (it goes to --base or --dreambooth)"
    elif any(k.startswith(("controlnet_cond_embedding.", "input_hint_block.")) for k in keys):
        what = "a ControlNet or SparseCtrl encoder (--controlnet, --sparsectrl)"
    elif "conv_in.weight" in keys:
        what = "a UNet without motion modules"
    elif any(k.startswith(("text_model.", "encoder.down", "decoder.up")) for k in keys):
        what = "a text encoder or VAE"
    else:
        return ""
    return f", which looks like {what}"


__all__ = ["check_known_layout", "design_of", "hotshot_to_official", "is_hotshot"]

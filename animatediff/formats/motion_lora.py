"""MotionLoRAs (AnimateDiff v2 camera motions) and the v3 domain adapter: low-rank updates of the animation UNet.

Official layout (github.com/guoyww/AnimateDiff, `animatediff/utils/convert_lora_safetensor_to_diffusers.py`):
`<module path>.processor.to_{q,k,v,out}_lora.{down,up}.weight`, where the target weight is
`<module path>.to_q.weight` … `<module path>.to_out.0.weight`, merged as W ← W + alpha · up @ down (no division
by the rank). MotionLoRAs address the motion modules
(`down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0`), the domain adapter
the image UNet's spatial attention (`down_blocks.0.attentions.0.transformer_blocks.0.attn1`).

diffusers-format motion LoRAs (PEFT `lora_A`/`lora_B` keys, or processor keys, on MotionAdapter names such as
`down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q`) are renamed to the official layout with the
motion-module rename table.

Both merge through `LoraMerger` under the components `motion_modules` and `unet`, so they can be switched or
removed exactly like image LoRAs.

Exporting: `save_motion_lora(lora_state, path, alpha=1.0)` writes the official layout from
`{official target weight name: (down, up)}`, e.g.
`{"down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight":
(down (rank, C), up (C, rank))}`; `alpha` is the factor the LoRA was trained with and is folded into `up`, so the
file merges at alpha 1 into what was trained (official files carry no alpha of their own). `save_adapter_lora`
writes a domain adapter the same way, on the image UNet's attention names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from animatediff.errors import InputError
from animatediff.formats.lora import Lora, LoraLayer, load_lora, parse_lora
from animatediff.formats.motion_module_files import diffusers_to_official
from animatediff.formats.state_dicts import read_weights, write_state_dict

MOTION = "motion_modules"
_TARGET = re.compile(r"^(.*)\.(to_q|to_k|to_v|to_out\.0)(?:\.weight)?$")


def _read(path: str | os.PathLike, kind: str) -> tuple[dict[str, torch.Tensor], str]:
    sd, file = read_weights(path, kind)
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}, file.name


def _route(lora: Lora) -> Lora:
    """Send layers on motion-module paths to the motion modules, in official names; the rest to the 2-D UNet."""
    layers = []
    for layer in lora.layers:
        target = layer.target
        if ".motion_modules." in f".{target}":
            if "temporal_transformer." not in target:  # a diffusers MotionAdapter name
                target = diffusers_to_official({f"{target}.weight": layer.down})
                target = next(iter(target)).removesuffix(".weight")
            layer = LoraLayer(MOTION, target, layer.down, layer.up, layer.alpha, layer.underscored)
        layers.append(layer)
    return Lora(lora.name, layers)


def load_motion_lora(path: str | os.PathLike) -> Lora:
    """A MotionLoRA (official or diffusers layout); every layer must target a motion module."""
    sd, name = _read(path, "MotionLoRA")
    lora = _route(parse_lora(sd, name, default_component="unet"))
    others = [layer.target for layer in lora.layers if layer.component != MOTION]
    if others:
        raise InputError(
            f"{name}: {len(others)} of {len(lora.layers)} layers are not on motion modules (e.g. {others[:2]}); "
            "not a MotionLoRA (image LoRAs go to --lora, the v3 domain adapter to --adapter-lora)"
        )
    return lora


def load_adapter_lora(path: str | os.PathLike) -> Lora:
    """The v3 domain adapter: a LoRA on the image UNet's spatial attention (no motion-module layers)."""
    sd, name = _read(path, "domain adapter")
    lora = _route(parse_lora(sd, name, default_component="unet"))
    others = [layer.target for layer in lora.layers if layer.component != "unet"]
    if others:
        raise InputError(
            f"{name}: {len(others)} of {len(lora.layers)} layers are not on the image UNet (e.g. {others[:2]}); "
            "not a domain adapter (MotionLoRAs go to --motion-lora)"
        )
    return lora


def load_any_lora(path: str | os.PathLike) -> Lora:
    """A LoRA file read as what it is (a prompt's `<lora:NAME>` tag: `prompt_loras`): its motion-module layers sent
    to the motion modules, the rest to the image UNet and text encoder(s), as an image LoRA's are."""
    sd, name = _read(path, "LoRA")
    return _route(parse_lora(sd, name, default_component="unet"))


LORA_KINDS = ("image", "adapter", "motion", "auto")
"""The kinds of LoRA a pipeline merges, in the official merge order: image (kohya/PEFT), the v3 domain adapter,
MotionLoRAs; then "auto", a file read as what it is (a prompt's `<lora:NAME>` tag)."""


def load_lora_of_kind(kind: str, path: str | os.PathLike) -> Lora:
    """A LoRA file read as `kind`: 'image' (`load_lora`), 'adapter' (`load_adapter_lora`), 'motion'
    (`load_motion_lora`), 'auto' (`load_any_lora`)."""
    loaders = {"image": load_lora, "adapter": load_adapter_lora, "motion": load_motion_lora, "auto": load_any_lora}
    if kind not in loaders:
        raise InputError(f"unknown LoRA kind {kind!r}; expected one of {', '.join(LORA_KINDS)}")
    return loaders[kind](path)


def save_motion_lora(
    lora_state: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | os.PathLike, alpha: float = 1.0
) -> Path:
    """Write `{official target weight name: (down, up)}` in the official MotionLoRA layout (.safetensors/.ckpt)."""
    return _save_processor_lora(lora_state, path, alpha, motion=True)


def save_adapter_lora(
    lora_state: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | os.PathLike, alpha: float = 1.0
) -> Path:
    """Write `{image UNet attention weight name: (down, up)}` (e.g. `down_blocks.0.attentions.0.transformer_blocks.0
    .attn1.to_q.weight`) in the official v3 domain-adapter layout, the MotionLoRA layout on the image UNet's
    spatial attention; `alpha` is folded into `up` as for MotionLoRAs."""
    return _save_processor_lora(lora_state, path, alpha, motion=False)


def _save_processor_lora(
    lora_state: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | os.PathLike, alpha: float, motion: bool
) -> Path:
    what = "a motion-module" if motion else "an image-UNet"
    sd = {}
    for target, (down, up) in lora_state.items():
        m = _TARGET.match(target)
        if m is None or ("motion_modules." in target) != motion:
            raise InputError(f"{target!r} is not {what} attention projection (…to_q/to_k/to_v/to_out.0)")
        if up.shape[1] != down.shape[0]:
            raise InputError(f"{target}: up {tuple(up.shape)} and down {tuple(down.shape)} ranks differ")
        prefix = f"{m.group(1)}.processor.{m.group(2).removesuffix('.0')}_lora"
        sd[f"{prefix}.down.weight"] = down.detach().float().clone()  # a shared tensor cannot go to safetensors
        sd[f"{prefix}.up.weight"] = up.detach().float() * alpha
    if not sd:
        raise InputError("no LoRA layers to save")
    return write_state_dict(path, sd)

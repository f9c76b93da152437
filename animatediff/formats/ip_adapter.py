"""IP-Adapter files and image encoders: read, and checked against the base before any weights are built.

IP-Adapter (Ye et al. 2023, "IP-Adapter: Text Compatible Image Prompt Adapter for Text-to-Image Diffusion Models",
arXiv 2308.06721) ships as one weights file in the layout diffusers' `IPAdapterMixin.load_ip_adapter` reads: the
image projection under `image_proj.` (CLIP image embedding → extra cross-attention tokens) and, under
`ip_adapter.`, `{k}.to_k_ip.weight` / `{k}.to_v_ip.weight` for the k-th attention processor of the UNet (k odd:
every cross-attention, in the order of `unet.attn_processors`). `.safetensors` files hold the two groups by
prefix, torch pickles (`.bin`) as two nested dicts; both are read weights-only (`formats/state_dicts.py`).

The image encoder is a `CLIPVisionModelWithProjection` folder (or hub id), by default the `image_encoder` folder
beside the weights file, as in the h94/IP-Adapter repository. Its preprocessing is the `CLIPImageProcessor` that
diffusers' `load_ip_adapter` makes when a pipeline has none: resize and centre-crop to the encoder's image size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.state_dicts import read_state_dict
from animatediff.hub import resolve_path

if TYPE_CHECKING:  # imported where used: transformers' image processors print notices as they are imported
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

GROUPS = ("image_proj", "ip_adapter")
KINDS = ("ip-adapter", "plus", "full", "faceid", "faceid-plus")
"""What diffusers' loader tells apart by the image projection's keys (`_convert_ip_adapter_image_proj_to_diffusers`):
the plain IP-Adapter (CLIP image embeddings, 4 tokens), Plus (a resampler over the encoder's penultimate hidden
states), Full (an MLP over them), FaceID and FaceID-Plus (face-recognition embeddings: not supported here)."""


def read_ip_adapter(path_or_id: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], Path]:
    """({"image_proj": {...}, "ip_adapter": {...}}, the file read) from a weights file or hub reference."""
    path = resolve_path(path_or_id, "IP-Adapter")
    if path.is_dir():
        raise InputError(f"IP-Adapter {os.fspath(path_or_id)!r} is a folder: give its weights file (.safetensors/.bin)")
    entries, _ = read_state_dict(path)
    groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in GROUPS}
    for key, value in entries.items():
        if key in GROUPS and isinstance(value, dict):  # a torch pickle: two nested dicts
            groups[key].update(value)
        elif isinstance(key, str) and key.split(".", 1)[0] in GROUPS and "." in key:  # flat, prefixed keys
            group, name = key.split(".", 1)
            groups[group][name] = value
    missing = [g for g in GROUPS if not groups[g]]
    if missing:
        raise InputError(
            f"{path} is not an IP-Adapter in diffusers' layout: no {' or '.join(missing)} weights "
            "(expected image_proj.* and ip_adapter.* keys)"
        )
    return groups, path


def ip_adapter_kind(state_dict: dict[str, dict[str, torch.Tensor]]) -> str:
    """One of `KINDS`, by the keys of the image projection, as diffusers' loader decides."""
    proj = state_dict["image_proj"]
    if "proj.weight" in proj:
        return "ip-adapter"
    if "proj.3.weight" in proj:
        return "full"
    if "perceiver_resampler.proj_in.weight" in proj:
        return "faceid-plus"
    if "norm.weight" in proj:
        return "faceid"
    if "latents" in proj and "proj_in.weight" in proj:
        return "plus"
    raise InputError(f"unknown IP-Adapter image projection (keys {', '.join(sorted(proj)[:4])}, …)")


def _cross_attentions(unet: UNet2DConditionModel) -> list[Attention]:
    """The UNet's cross-attention layers in the order of `unet.attn_processors` (the IP-Adapter key order)."""
    return [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]


def check_ip_adapter(state_dict: dict[str, dict[str, torch.Tensor]], unet: UNet2DConditionModel, name: str) -> str:
    """The IP-Adapter's kind (`KINDS`, FaceID refused) once it is known to fit `unet`: the same cross-attention
    width and the same layers as the base it was made for; a one-line InputError naming the mismatch otherwise."""
    kind = ip_adapter_kind(state_dict)
    if kind.startswith("faceid"):
        raise InputError(f"IP-Adapter {name} is a FaceID adapter (face-recognition embeddings): not supported")
    layers = _cross_attentions(unet)
    width = int(unet.config.cross_attention_dim)
    weights = state_dict["ip_adapter"]
    first = weights.get("1.to_k_ip.weight")
    if first is None:
        raise InputError(f"IP-Adapter {name}: no ip_adapter.1.to_k_ip.weight, the first cross-attention's key")
    if first.shape[1] != width:
        raise InputError(
            f"IP-Adapter {name} was made for a base with cross-attention width {first.shape[1]}, this base has "
            f"{width} (SD1.x: 768, SD2: 1024, SDXL: 2048); use an IP-Adapter made for this base"
        )
    count = sum(key.endswith(".to_k_ip.weight") for key in weights)
    if count != len(layers):
        raise InputError(
            f"IP-Adapter {name} has {count} cross-attention layers, this base's UNet {len(layers)}; use an IP-Adapter "
            "made for this base"
        )
    for i, layer in enumerate(layers):
        for proj in ("to_k_ip", "to_v_ip"):
            w = weights.get(f"{2 * i + 1}.{proj}.weight")
            if w is None or tuple(w.shape) != (layer.to_k.out_features, width):
                got = "missing" if w is None else f"of shape {tuple(w.shape)}"
                raise InputError(
                    f"IP-Adapter {name}: ip_adapter.{2 * i + 1}.{proj}.weight is {got}, this base's layer needs "
                    f"{(layer.to_k.out_features, width)}; use an IP-Adapter made for this base"
                )
    return kind


def image_embed_width(state_dict: dict[str, dict[str, torch.Tensor]], kind: str) -> tuple[int, str]:
    """(width, what of the image encoder it must equal) of the image projection's input: the encoder's projected
    image embedding (`projection_dim`) for the plain IP-Adapter, its hidden states (`hidden_size`) otherwise."""
    proj = state_dict["image_proj"]
    if kind == "ip-adapter":
        return int(proj["proj.weight"].shape[1]), "projection_dim"
    if kind == "full":
        return int(proj["proj.0.weight"].shape[1]), "hidden_size"
    return int(proj["proj_in.weight"].shape[1]), "hidden_size"


def default_image_encoder(weights: Path) -> Path:
    """Where an IP-Adapter's image encoder is looked for when none is named: `image_encoder/` beside its file."""
    return weights.parent / "image_encoder"


def check_image_encoder(
    path_or_id: str | os.PathLike, width: int, field: str, config: CLIPVisionConfig | None = None
) -> None:
    """One line unless the image encoder's `field` (projection_dim or hidden_size) is `width`, what an IP-Adapter's
    projection takes; its config read from its folder (or hub id, offline) unless given (an encoder loaded
    already)."""
    from transformers import CLIPVisionConfig

    if config is None:
        path = resolve_path(path_or_id, "image encoder")
        if not (path / "config.json").is_file():
            raise InputNotFound(
                f"image encoder {os.fspath(path_or_id)!r}: no config.json (a CLIPVisionModelWithProjection folder)"
            )
        config = CLIPVisionConfig.from_pretrained(path, local_files_only=True)
    if int(getattr(config, field)) != width:
        raise InputError(
            f"image encoder {os.fspath(path_or_id)!r} gives {field} {getattr(config, field)}, the IP-Adapter takes "
            f"{width}: use the image encoder the IP-Adapter was trained with"
        )


def load_image_encoder(
    path_or_id: str | os.PathLike, dtype: torch.dtype, device: torch.device | str
) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """(CLIPVisionModelWithProjection, CLIPImageProcessor) from a local folder or hub id, offline (checked first
    against the IP-Adapter: `check_image_encoder`)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    path = resolve_path(path_or_id, "image encoder")
    encoder = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True, dtype=dtype)
    size = int(encoder.config.image_size)
    return encoder.to(device).eval().requires_grad_(False), CLIPImageProcessor(size=size, crop_size=size)

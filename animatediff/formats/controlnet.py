"""ControlNet weights (Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV
2023): diffusers `ControlNetModel` folders, hub ids, and the single files people download.

- A diffusers folder (config.json + diffusion_pytorch_model.*), local or a hub id (`lllyasviel/control_v11p_sd15_
  openpose`), loads with `ControlNetModel.from_pretrained`; one whose config names a `T2IAdapter` (`TencentARC/
  t2iadapter_sketch_sd15v2`) with `T2IAdapter.from_pretrained` (`pipeline/t2i_adapter.py`); a T2I-Adapter's single
  file (TencentARC's `t2iadapter_*.pth`) through `formats/t2i_adapter.py`.
- A single file (`control_v11p_sd15_openpose.pth`, `.safetensors`, or a hub file `owner/repo/file.pth`) holds the
  original layout of github.com/lllyasviel/ControlNet (`cldm/cldm.py`): `control_model.*` (the v1.0 files hold the
  whole SD model beside it; only `control_model.*` is read), or the same names without the prefix. Its config is
  not in the file: it is derived from the base's UNet config as diffusers' `ControlNetModel.from_unet` does, with
  the hint encoder's channels read off the file's `input_hint_block.*` shapes. diffusers' own converter
  (`single_file_utils.convert_controlnet_checkpoint`) renames the keys, and the weights load strictly. Nothing is
  fetched; pickles are read weights-only (`state_dicts.read_state_dict`). Files already in diffusers' names load
  the same way.

A ControlNet made for another model family (SD2's 1024-wide or SDXL's 2048-wide text, other UNet channels) is an
`InputError` naming both sides, before anything is denoised. An SDXL base takes SDXL ControlNets (diffusers folders, hub
ids, or single files in diffusers' key names), their added text/time embeddings given the pooled text and size ids the
UNet gets.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import ControlNetModel, T2IAdapter, UNet2DConditionModel

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.state_dicts import read_state_dict
from animatediff.formats.t2i_adapter import is_t2i_adapter_state_dict, t2i_adapter_from_state_dict
from animatediff.hub import resolve_path

LDM_PREFIX = "control_model."
KNOWN_CROSS_DIMS = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
HINT_CONV_OUT = 14
"""`input_hint_block.14`: the hint encoder's last convolution in the original layout (4 channel stages: convs at
0, 2, …, 12, SiLUs between), where diffusers' converter looks for it."""

# Where each layout keeps what `check_controlnet` compares: (text width, first UNet conv, hint encoder's first conv).
LDM_KEYS = ("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "input_blocks.0.0.weight")
DIFFUSERS_KEYS = ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", "conv_in.weight")


def _family(dim: int) -> str:
    return KNOWN_CROSS_DIMS.get(dim, "another model family")


def check_controlnet(
    config: Mapping, unet_config: Mapping, name: str = "ControlNet", vae_scale_factor: int | None = None
) -> None:
    """Refuse a ControlNet whose config (`ControlNetModel.config`, or one read off a file) does not fit the base's
    UNet: another text width (SD2, SDXL), other latent channels or block channels; with `vae_scale_factor`, also a
    hint encoder that does not bring control images down to the latents' size."""
    dim, expected = config.get("cross_attention_dim"), unet_config["cross_attention_dim"]
    if dim is not None and dim != expected:
        raise InputError(
            f"{name}: a ControlNet for cross-attention dimension {dim} ({_family(dim)}), but the base UNet has "
            f"{expected} ({_family(expected)}); use a ControlNet made for this base (SD1.5: *_sd15_*)"
        )
    added, base_added = config.get("addition_embed_type"), unet_config.get("addition_embed_type")
    if added != base_added:
        kind = "an SDXL-style ControlNet (added text/time embeddings)" if added else "an SD1.x-style ControlNet"
        base = "an SDXL base" if base_added else "an SD1.x base"
        raise InputError(f"{name}: {kind} for {base}; use a ControlNet made for this base")
    for key, what in (("in_channels", "latent channels"), ("block_out_channels", "block channels")):
        value, base = config.get(key), unet_config[key]
        if value is not None and tuple(_tuple(value)) != tuple(_tuple(base)):
            raise InputError(f"{name}: a ControlNet for {what} {value}, but the base UNet has {base}")
    stages = config.get("conditioning_embedding_out_channels")
    if vae_scale_factor is not None and stages is not None and 2 ** (len(stages) - 1) != vae_scale_factor:
        raise InputError(
            f"{name}: its hint encoder downsamples control images {2 ** (len(stages) - 1)}×, but this base's VAE "
            f"{vae_scale_factor}×; the ControlNet was made for another VAE"
        )


def _tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def strip_prefix(sd: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The ControlNet's tensors of a single file: `control_model.*` without the prefix when there is one."""
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith(LDM_PREFIX) for k in tensors):
        return {k[len(LDM_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LDM_PREFIX)}
    return tensors


def file_config(sd: Mapping[str, torch.Tensor], name: str) -> dict:
    """What a single file says about the ControlNet it holds (names without `control_model.`): the text width and
    channels `check_controlnet` compares, and the hint encoder's channels and input channels."""
    diffusers_names = "conv_in.weight" in sd
    cross_key, conv_in_key = DIFFUSERS_KEYS if diffusers_names else LDM_KEYS
    if conv_in_key not in sd:
        first = next(iter(sd), None)
        raise InputError(
            f"{name} is not a ControlNet: no {conv_in_key!r} (or {LDM_PREFIX}{conv_in_key}) weight; first key {first!r}"
        )
    config: dict = {"in_channels": sd[conv_in_key].shape[1]}
    if cross_key in sd:
        config["cross_attention_dim"] = sd[cross_key].shape[1]
    if any(k.startswith(("label_emb.", "add_embedding.")) for k in sd):
        config["addition_embed_type"] = "text_time"
    if diffusers_names:
        blocks = sorted(
            {int(m[1]) for k in sd if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.weight$", k))}
        )
        convs = ["controlnet_cond_embedding.conv_in.weight"]
        convs += [f"controlnet_cond_embedding.blocks.{i}.weight" for i in blocks]
    else:
        convs = [f"input_hint_block.{i}.weight" for i in range(0, HINT_CONV_OUT, 2)]
    missing = [k for k in convs if k not in sd]
    if missing or (not diffusers_names and f"input_hint_block.{HINT_CONV_OUT}.weight" not in sd):
        raise InputError(
            f"{name}: its hint encoder is not the ControlNet layout this loader reads (missing {missing[:1] or ''}"
            f"input_hint_block.{HINT_CONV_OUT}); convert it to a diffusers ControlNetModel folder"
        )
    # conv_in gives the first stage's channels; then each stage ends with a stride-2 conv to the next one's.
    config["conditioning_channels"] = sd[convs[0]].shape[1]
    config["conditioning_embedding_out_channels"] = (sd[convs[0]].shape[0],) + tuple(
        sd[k].shape[0] for k in convs[2::2]
    )
    return config


def _load_assigned(model: ControlNetModel, sd: dict[str, torch.Tensor], name: str) -> None:
    """Strict load into a model built on the meta device (the tensors become its parameters)."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise InputError(
            f"{name}: the ControlNet weights do not fit a ControlNet for this base: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in sd.items() if v.shape != expected[k].shape
    ]
    if wrong:
        raise InputError(
            f"{name}: {len(wrong)} ControlNet weights have other shapes than this base's, e.g. {wrong[:2]}"
        )
    model.load_state_dict(sd, strict=True, assign=True)


def controlnet_from_state_dict(
    sd: Mapping[str, object], unet: UNet2DConditionModel, name: str = "ControlNet", dtype: torch.dtype | None = None
) -> ControlNetModel:
    """A ControlNet from a single file's entries (original or diffusers names), its config derived from `unet`'s
    (`ControlNetModel.from_unet`) and the file's hint encoder; `dtype`: None keeps the file's floating type."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    tensors = strip_prefix(sd)
    found = file_config(tensors, name)
    check_controlnet(found, unet.config, name)
    with torch.device("meta"):
        model = ControlNetModel.from_unet(
            unet,
            conditioning_embedding_out_channels=found["conditioning_embedding_out_channels"],
            load_weights_from_unet=False,
            conditioning_channels=found["conditioning_channels"],
        )
    converted = convert_controlnet_checkpoint(tensors, dict(model.config))
    _load_assigned(model, {k: v for k, v in converted.items() if v is not None}, name)
    if dtype is not None:
        model.to(dtype)
    return model.eval().requires_grad_(False)


def load_controlnet(
    path_or_id: str | os.PathLike, unet: UNet2DConditionModel, dtype: torch.dtype | None = None
) -> ControlNetModel | T2IAdapter:
    """A ControlNet for the base whose 2-D UNet is `unet`: a diffusers folder or hub id, or a single file (local,
    or `owner/repo/file` on the hub) in the original or diffusers layout; or a T2I-Adapter, a folder or a single file
    (`formats/t2i_adapter.py`). `dtype`: None keeps the weights' own."""
    name = os.fspath(path_or_id)
    path = resolve_path(path_or_id, "ControlNet")
    if path.is_dir():
        if (path / "config.json").is_file():
            kwargs = {} if dtype is None else {"torch_dtype": dtype}
            if _class_name(path / "config.json") == "T2IAdapter":  # checked against the base when a call binds it
                return T2IAdapter.from_pretrained(path, **kwargs).eval().requires_grad_(False)
            model = ControlNetModel.from_pretrained(path, **kwargs)
            check_controlnet(model.config, unet.config, name)
            return model.eval().requires_grad_(False)
        path = _only_weights_file(path)
    sd, _ = read_state_dict(path)
    if isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if is_t2i_adapter_state_dict(sd):  # TencentARC's original layout, or diffusers' names without a config
        return t2i_adapter_from_state_dict(sd, len(unet.config.block_out_channels), name, dtype)
    return controlnet_from_state_dict(sd, unet, name, dtype)


def _class_name(config: Path) -> str | None:
    """The `_class_name` a diffusers config file names (None where it names none or is not JSON)."""
    try:
        return json.loads(config.read_text()).get("_class_name")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None


def _only_weights_file(folder: Path) -> Path:
    found = [p for p in sorted(folder.iterdir()) if p.suffix in (".safetensors", ".pth", ".ckpt", ".bin", ".pt")]
    if len(found) != 1:
        raise InputNotFound(
            f"{folder}: not a diffusers ControlNet folder (no config.json) and not one weights file "
            f"({len(found)} found)"
        )
    return found[0]


__all__ = ["check_controlnet", "controlnet_from_state_dict", "file_config", "load_controlnet", "strip_prefix"]

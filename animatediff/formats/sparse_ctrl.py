"""SparseCtrl files: the official single files and diffusers' `SparseControlNetModel` folders, both ways.

- Official (`v3_sd15_sparsectrl_rgb.ckpt`, `v3_sd15_sparsectrl_scribble.ckpt`, github.com/guoyww/AnimateDiff):
  the ControlNet's weights in diffusers' 2-D names (`conv_in`, `down_blocks.*.resnets/attentions`, `mid_block`,
  `controlnet_down_blocks`, `controlnet_cond_embedding`) and the motion modules in the official motion-module
  names (`down_blocks.{i}.motion_modules.{j}.temporal_transformer.…`), possibly under a `controlnet` or
  `state_dict` entry. The file holds no config: the shape is read off the weights (block channels, layers,
  text width, the condition embedding and its channels; the mask channel the official configs always add), the
  attention heads are SD1.x's 8 unless `heads` says otherwise, and the rest is the official inference configs'
  (`configs/inference/sparsectrl/*.yaml`: noisy input zeroed, 8 motion heads, 32 positions).
- diffusers (a folder with config.json and diffusion_pytorch_model.safetensors, or a hub id such as
  `guoyww/animatediff-sparsectrl-scribble`): the same 2-D names, the motion modules in diffusers' MotionAdapter
  names; the config says the rest.

What a file or config says about its shape is read in `formats/sparse_ctrl_configs.py`. Loads are strict; nothing
is fetched and pickles are read weights-only (`state_dicts.read_state_dict`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import ControlNetModel

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.controlnet import KNOWN_CROSS_DIMS
from animatediff.formats.motion_module_files import (
    DIFFUSERS_WEIGHTS,
    diffusers_to_official,
    official_to_diffusers,
)
from animatediff.formats.sparse_ctrl_configs import (
    MOTION_KEY,
    diffusers_config,
    plain,
    shape_from_diffusers,
    shape_from_weights,
)
from animatediff.formats.state_dicts import non_finite, read_state_dict, write_state_dict
from animatediff.hub import resolve_path
from animatediff.io.atomic import write_folder_atomic
from animatediff.models.motion_module import sinusoidal_position_encoding
from animatediff.models.sparse_ctrl import SparseControlNet, SparseCtrlConfig

OFFICIAL_CONFIG_KEY = "animatediff_sparsectrl_config"
"""Where a file written here keeps its SparseCtrl config (safetensors metadata)."""

# ------------------------------------------------------------------------------------------ key layouts


def split_official(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """(the ControlNet's tensors, the motion modules' tensors in the official names) of an official-layout dict."""
    controlnet = {k: v for k, v in sd.items() if not MOTION_KEY.match(k)}
    motion = {k: v for k, v in sd.items() if MOTION_KEY.match(k)}
    return controlnet, motion


def diffusers_to_official_sd(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' SparseControlNetModel names → the official file's (only the motion modules' names differ)."""
    controlnet, motion = split_official(sd)
    return {**controlnet, **diffusers_to_official(motion)}


def official_to_diffusers_sd(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official file's names → diffusers' SparseControlNetModel names."""
    controlnet, motion = split_official(sd)
    return {**controlnet, **official_to_diffusers(motion)}


def model_state_dict(model: SparseControlNet) -> dict[str, torch.Tensor]:
    """The model's weights in the official file's names, position encodings included (as released files carry
    them)."""
    sd = {k.removeprefix("controlnet."): v for k, v in model.controlnet.state_dict().items()}
    for name, value in model.motion.state_dict().items():
        sd[name] = value
    for name, buffer in model.motion.named_buffers():
        if name.endswith("pos_encoder.pe"):
            sd[name] = buffer
    return sd


def _unwrap(sd: dict) -> dict[str, torch.Tensor]:
    for key in ("controlnet", "state_dict"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


# -------------------------------------------------------------------------------------------- loading


def build_sparse_ctrl(
    shape: dict, config: SparseCtrlConfig, sd: Mapping[str, torch.Tensor], name: str
) -> SparseControlNet:
    """A SparseCtrl encoder of this shape, with official-layout weights `sd` loaded strictly."""
    shape = {k: v for k, v in shape.items() if k != "conditioning_embedding_out_channels"}
    with torch.device("meta"):
        controlnet = ControlNetModel(
            **shape,
            conditioning_channels=config.input_channels,
            conditioning_embedding_out_channels=config.embedding_channels,
        )
    model = SparseControlNet.from_controlnet(controlnet, config)
    controlnet_sd, motion_sd = split_official(sd)
    pe = {k: v for k, v in motion_sd.items() if k.endswith("pos_encoder.pe")}
    motion_sd = {k: v for k, v in motion_sd.items() if k not in pe}
    expected = {f"controlnet.{k}" for k in model.controlnet.state_dict()} | {
        f"motion.{k}" for k in model.motion.state_dict()
    }
    given = {f"controlnet.{k}": v for k, v in controlnet_sd.items()} | {f"motion.{k}": v for k, v in motion_sd.items()}
    missing, unexpected = sorted(expected - set(given)), sorted(set(given) - expected)
    if missing or unexpected:
        raise InputError(
            f"{name}: the weights do not fit a SparseCtrl encoder of this shape: {len(missing)} missing (e.g. "
            f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    current = model.state_dict()
    wrong = [k for k, v in given.items() if tuple(v.shape) != tuple(current[k].shape)]
    if wrong:
        raise InputError(
            f"{name}: {len(wrong)} SparseCtrl weights have other shapes than its config says, e.g. {wrong[:2]}"
        )
    model.load_state_dict(given, strict=True, assign=True)
    for module_name, buffer in list(model.motion.named_buffers()):  # meta → the recomputed sinusoid, or the file's
        owner = model.motion.get_submodule(module_name.rsplit(".", 1)[0])
        value = sinusoidal_position_encoding(buffer.shape[1], buffer.shape[2])
        stored = pe.get(module_name)
        if stored is not None:
            if stored.shape != value.shape:
                raise InputError(f"{name}: position encoding {module_name} of shape {tuple(stored.shape)}")
            value = stored.float()
        owner.register_buffer("pe", value, persistent=False)
    return model.eval().requires_grad_(False)


def read_sparse_ctrl(
    path_or_id: str | os.PathLike, overrides: Mapping | None = None
) -> tuple[dict, dict, SparseCtrlConfig]:
    """(official-layout tensors, ControlNetModel kwargs, SparseCtrl config) from a file, folder or hub id;
    `overrides`: SparseCtrlConfig fields that an official inference config states (`official_config`)."""
    overrides = dict(overrides or {})
    path = resolve_path(path_or_id, "SparseCtrl")
    if path.is_dir():
        config_file = path / "config.json"
        weights = next((path / n for n in DIFFUSERS_WEIGHTS if (path / n).is_file()), None)
        if not config_file.is_file() or weights is None:
            raise InputNotFound(
                f"{path} is not a diffusers SparseControlNetModel folder (needs config.json and "
                f"{' or '.join(DIFFUSERS_WEIGHTS)})"
            )
        shape, config = shape_from_diffusers(json.loads(config_file.read_text()))
        raw, _ = read_state_dict(weights)
        sd = diffusers_to_official_sd(_unwrap(raw))
    else:
        raw, metadata = read_state_dict(path)
        sd = _unwrap(raw)
        if any(MOTION_KEY.match(k) and ".attn1." in k for k in sd):  # diffusers names in one file
            sd = diffusers_to_official_sd(sd)
        shape, config = shape_from_weights(sd)
        if OFFICIAL_CONFIG_KEY in metadata:  # written here: the config it was saved with
            stored = json.loads(metadata[OFFICIAL_CONFIG_KEY])
            config = SparseCtrlConfig(**stored["sparsectrl"])
            shape = {**shape, **stored["controlnet"]}
    counts = non_finite(sd)
    if counts:
        raise InputError(f"{path}: {sum(counts.values())} SparseCtrl weight values are not finite (NaN or inf)")
    if overrides:
        config = SparseCtrlConfig(**{**config.to_dict(), **overrides})
    return sd, shape, config


def check_sparse_ctrl(shape: Mapping, unet_config: Mapping, name: str = "SparseCtrl") -> None:
    """Refuse a SparseCtrl encoder made for another base: other text width (SD2, SDXL), block channels or latent
    channels."""
    dim, expected = shape.get("cross_attention_dim"), unet_config["cross_attention_dim"]
    if dim != expected:
        family = KNOWN_CROSS_DIMS.get(dim, "another model family")
        base = KNOWN_CROSS_DIMS.get(expected, "this base")
        raise InputError(
            f"{name}: a SparseCtrl for cross-attention dimension {dim} ({family}), but the base UNet has {expected} "
            f"({base}); use one made for this base (SD1.5: v3_sd15_sparsectrl_*)"
        )
    for key, what in (("block_out_channels", "block channels"), ("in_channels", "latent channels")):
        value, base = shape.get(key), unet_config[key]
        if value is not None and tuple(_tuple(value)) != tuple(_tuple(base)):
            raise InputError(f"{name}: a SparseCtrl for {what} {plain(value)}, but the base UNet has {plain(base)}")


def _tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def load_sparse_ctrl(
    path_or_id: str | os.PathLike,
    unet_config: Mapping | None = None,
    dtype: torch.dtype | None = None,
    overrides: Mapping | None = None,
) -> SparseControlNet:
    """A SparseCtrl encoder from an official file, a diffusers folder or a hub id; checked against the base's UNet
    config when given. `dtype`: None keeps the weights' own; `overrides`: SparseCtrlConfig fields an official
    inference config states (`official_config`)."""
    name = os.fspath(path_or_id)
    sd, shape, config = read_sparse_ctrl(path_or_id, overrides)
    if unet_config is not None:
        check_sparse_ctrl(shape, unet_config, name)
    model = build_sparse_ctrl(shape, config, sd, name)
    return model.to(dtype) if dtype is not None else model


# -------------------------------------------------------------------------------------------- writing


def save_sparse_ctrl(model: SparseControlNet, path: str | os.PathLike, layout: str = "official") -> Path:
    """Write `model`: one official-layout file (.safetensors/.ckpt, its config in the metadata), or a diffusers
    SparseControlNetModel folder."""
    path = Path(path)
    sd = {k: v.detach().contiguous() for k, v in model_state_dict(model).items()}
    if layout == "official":
        base = dict(model.controlnet.config)
        stored = {
            "sparsectrl": model.sparse_config.to_dict(),
            "controlnet": {k: plain(base[k]) for k in ("attention_head_dim", "down_block_types") if k in base},
        }
        return write_state_dict(path, sd, {OFFICIAL_CONFIG_KEY: json.dumps(stored)})
    if layout == "diffusers":

        def write(folder: Path) -> None:
            write_state_dict(folder / DIFFUSERS_WEIGHTS[0], official_to_diffusers_sd(sd))
            (folder / "config.json").write_text(json.dumps(diffusers_config(model), indent=2))

        return write_folder_atomic(path, write)
    raise InputError(f"unknown SparseCtrl layout {layout!r}; expected 'official' or 'diffusers'")


def convert_sparse_ctrl(src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Official file ↔ diffusers folder: a destination with a weights extension is official, else a folder. The
    weights keep the source's dtype unless `dtype` names another."""
    model = load_sparse_ctrl(src)
    if dtype is not None:
        model = model.to(dtype)
    dst = Path(dst)
    layout = "official" if dst.suffix in (".safetensors", ".ckpt", ".pt", ".pth") else "diffusers"
    return save_sparse_ctrl(model, dst, layout)


def is_sparse_ctrl(path: Path) -> bool:
    """Whether a local file or folder holds a SparseCtrl encoder (for `animatediff convert`)."""
    if path.is_dir():
        config = path / "config.json"
        return config.is_file() and json.loads(config.read_text()).get("_class_name") == "SparseControlNetModel"
    try:
        sd, _ = read_state_dict(path)
    except InputError:
        return False
    sd = _unwrap(sd)
    return "controlnet_mid_block.weight" in sd and any(MOTION_KEY.match(k) for k in sd)


__all__ = [
    "check_sparse_ctrl",
    "convert_sparse_ctrl",
    "diffusers_to_official_sd",
    "is_sparse_ctrl",
    "load_sparse_ctrl",
    "model_state_dict",
    "official_to_diffusers_sd",
    "read_sparse_ctrl",
    "save_sparse_ctrl",
]

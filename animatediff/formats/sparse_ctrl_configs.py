"""What a SparseCtrl file or config says about the encoder it holds: its ControlNet's shape and its SparseCtrl
config, read off official-layout weights (`shape_from_weights`), a diffusers `SparseControlNetModel` config.json
(`shape_from_diffusers`) or an official inference config (`official_config`: `configs/inference/sparsectrl/*.yaml`),
and written back as diffusers' config (`diffusers_config`). `formats/sparse_ctrl.py` reads and writes the files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from animatediff.errors import InputError, InputNotFound
from animatediff.models.sparse_ctrl import SparseControlNet, SparseCtrlConfig

MOTION_KEY = re.compile(r"^down_blocks\.\d+\.motion_modules\.")
"""A motion module's weight in the official names (the rest of a SparseCtrl file is its ControlNet's)."""

# diffusers SparseControlNetModel config fields a ControlNetModel takes under the same name.
SHARED_FIELDS = (
    "in_channels",
    "flip_sin_to_cos",
    "freq_shift",
    "only_cross_attention",
    "block_out_channels",
    "layers_per_block",
    "downsample_padding",
    "mid_block_scale_factor",
    "act_fn",
    "norm_num_groups",
    "norm_eps",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "attention_head_dim",
    "num_attention_heads",
    "use_linear_projection",
    "upcast_attention",
    "resnet_time_scale_shift",
    "conditioning_embedding_out_channels",
    "global_pool_conditions",
    "controlnet_conditioning_channel_order",
)


def shape_from_weights(sd: Mapping[str, torch.Tensor], heads: int = 8) -> tuple[dict, SparseCtrlConfig]:
    """(ControlNetModel kwargs, SparseCtrl config) read off official-layout weights; `heads`: the spatial attention's
    (SD1.x's 8), which the weights do not show."""
    if "conv_in.weight" not in sd or "controlnet_mid_block.weight" not in sd:
        raise InputError("not a SparseCtrl file: no conv_in.weight and controlnet_mid_block.weight")
    blocks = sorted({int(m[1]) for k in sd if (m := re.match(r"down_blocks\.(\d+)\.resnets\.", k))})
    channels = [int(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in blocks]
    layers = len({m[1] for k in sd if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))})
    with_attention = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in sd) for i in blocks]
    to_k = next((v for k, v in sd.items() if k.endswith("attn2.to_k.weight")), None)
    if to_k is None:
        raise InputError("not a SparseCtrl file: no cross-attention (attn2.to_k) weights")
    simplified = "controlnet_cond_embedding.weight" in sd
    if simplified:
        inputs = int(sd["controlnet_cond_embedding.weight"].shape[1])
        stages = SparseCtrlConfig().embedding_channels
    else:
        inputs = int(sd["controlnet_cond_embedding.conv_in.weight"].shape[1])
        convs = sorted({int(m[1]) for k in sd if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))})
        stages = (int(sd["controlnet_cond_embedding.conv_in.weight"].shape[0]),)
        stages += tuple(int(sd[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0]) for i in convs[1::2])
    pe = next((v for k, v in sd.items() if k.endswith("pos_encoder.pe")), None)
    group_norm = next((v for k, v in sd.items() if MOTION_KEY.match(k) and k.endswith(".norm.weight")), None)
    shape = {
        "in_channels": int(sd["conv_in.weight"].shape[1]),
        "block_out_channels": tuple(channels),
        "layers_per_block": layers,
        "down_block_types": tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in with_attention),
        "cross_attention_dim": int(to_k.shape[1]),
        "attention_head_dim": heads,
    }
    config = SparseCtrlConfig(
        conditioning_channels=inputs - 1,
        simplified_embedding=simplified,
        embedding_channels=stages,
        max_frames=int(pe.shape[1]) if pe is not None else 32,
        motion_norm_groups=32 if group_norm is None or group_norm.numel() % 32 == 0 else 1,
    )
    return shape, config


def shape_from_diffusers(cfg: Mapping) -> tuple[dict, SparseCtrlConfig]:
    """(ControlNetModel kwargs, SparseCtrl config) from a diffusers SparseControlNetModel config.json."""
    if cfg.get("_class_name") not in (None, "SparseControlNetModel"):
        raise InputError(f"not a SparseCtrl folder: its config.json is a {cfg.get('_class_name')}")
    shape = {k: cfg[k] for k in SHARED_FIELDS if k in cfg}
    types = cfg.get("down_block_types", ("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",))
    shape["down_block_types"] = tuple("CrossAttnDownBlock2D" if "CrossAttn" in t else "DownBlock2D" for t in types)
    heads = cfg.get("motion_num_attention_heads", 8)
    blocks = cfg.get("temporal_transformer_layers_per_block", 1)
    config = SparseCtrlConfig(
        conditioning_channels=int(cfg.get("conditioning_channels", 4)),
        simplified_embedding=bool(cfg.get("use_simplified_condition_embedding", True)),
        concat_mask=bool(cfg.get("concat_conditioning_mask", True)),
        embedding_channels=tuple(cfg.get("conditioning_embedding_out_channels") or (16, 32, 96, 256)),
        motion_heads=int(heads[0] if isinstance(heads, (list, tuple)) else heads),
        max_frames=int(cfg.get("motion_max_seq_length", 32)),
        motion_blocks=int(blocks[0] if isinstance(blocks, (list, tuple)) else blocks),
    )
    return shape, config


def diffusers_config(model: SparseControlNet) -> dict:
    """The model's config as diffusers' SparseControlNetModel reads it."""
    from diffusers import __version__ as diffusers_version

    base = dict(model.controlnet.config)
    c = model.sparse_config
    out = {"_class_name": "SparseControlNetModel", "_diffusers_version": diffusers_version}
    out.update({k: plain(base[k]) for k in SHARED_FIELDS if k in base})
    out["down_block_types"] = [
        "CrossAttnDownBlockMotion" if "CrossAttn" in t else "DownBlockMotion" for t in base["down_block_types"]
    ]
    out.update(
        conditioning_channels=c.conditioning_channels,
        use_simplified_condition_embedding=c.simplified_embedding,
        concat_conditioning_mask=c.concat_mask,
        conditioning_embedding_out_channels=list(c.embedding_channels),
        motion_max_seq_length=c.max_frames,
        motion_num_attention_heads=c.motion_heads,
        temporal_transformer_layers_per_block=c.motion_blocks,
    )
    return out


def plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


# What an official inference config's `controlnet_additional_kwargs` say, and how they must be where they are fixed.
OFFICIAL_KWARGS = {
    "conditioning_channels": "conditioning_channels",
    "use_simplified_condition_embedding": "simplified_embedding",
    "set_noisy_sample_input_to_zero": "zero_noisy_input",
    "concate_conditioning_mask": "concat_mask",
}
OFFICIAL_MOTION_KWARGS = {
    "num_attention_heads": "motion_heads",
    "num_transformer_block": "motion_blocks",
    "temporal_position_encoding_max_len": "max_frames",
}
OFFICIAL_FIXED = {
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": False,
    "motion_module_type": "Vanilla",
}


def official_config(path: str | os.PathLike) -> dict:
    """SparseCtrlConfig fields from an official inference config (`configs/inference/sparsectrl/*.yaml`:
    `controlnet_additional_kwargs`); an InputError naming a key this encoder cannot be."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputNotFound(f"controlnet_config not found: {os.fspath(path)}")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"controlnet_config {file}: not valid YAML ({err})") from None
    kwargs = raw.get("controlnet_additional_kwargs", {}) if isinstance(raw, dict) else None
    if not isinstance(kwargs, dict):
        raise InputError(f"controlnet_config {file}: controlnet_additional_kwargs must be a mapping")
    out = {}
    for key, value in kwargs.items():
        if key in OFFICIAL_KWARGS:
            out[OFFICIAL_KWARGS[key]] = value
        elif key in OFFICIAL_FIXED:
            fixed = OFFICIAL_FIXED[key]
            if (list(value) if isinstance(value, (list, tuple)) else value) != fixed:
                raise InputError(f"controlnet_config {file}: {key} {value!r} is not supported (only {fixed!r})")
        elif key == "motion_module_kwargs":
            for name, item in (value or {}).items():
                if name in OFFICIAL_MOTION_KWARGS:
                    out[OFFICIAL_MOTION_KWARGS[name]] = item
                elif name == "attention_block_types" and list(item) != ["Temporal_Self"]:
                    raise InputError(f"controlnet_config {file}: attention_block_types {item!r} is not supported")
    return out


__all__ = ["MOTION_KEY", "diffusers_config", "official_config", "plain", "shape_from_diffusers", "shape_from_weights"]

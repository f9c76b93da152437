"""The motion module a run starts from: fresh (zero proj_out), a trained file, or a trained file rebuilt as
another version (v1 → v2: a new mid-block module and 32 positions, everything else carried over). A fresh module is
of `model.scratch.design` (the temporal transformer, or the ablation's temporal convolution); a file keeps its own."""

from __future__ import annotations

import dataclasses

from animatediff.errors import InputError
from animatediff.formats.motion_module_files import build_from_state_dict, read_motion_file
from animatediff.models.motion_modules import MotionModuleConfig, MotionModules
from animatediff.train.config import ModelConfig


def _layers_per_block(unet_config: dict) -> int:
    layers = unet_config.get("layers_per_block", 2)
    if isinstance(layers, (list, tuple)):
        if len(set(layers)) != 1:
            raise InputError(f"base UNet has differing layers per block {layers}; motion modules need one count")
        layers = layers[0]
    return int(layers)


def default_max_frames(version: str) -> int:
    return 24 if version == "v1" else 32


def scratch_config(model: ModelConfig, unet_config: dict) -> MotionModuleConfig:
    s = model.scratch
    return MotionModuleConfig(
        block_out_channels=tuple(unet_config["block_out_channels"]),
        layers_per_block=_layers_per_block(unet_config),
        use_mid_block=s.version == "v2",
        num_attention_heads=s.num_attention_heads,
        num_transformer_blocks=s.num_transformer_blocks,
        max_frames=s.max_frames or default_max_frames(s.version),
        norm_num_groups=s.norm_num_groups,
        version=s.version,
        design=s.design,
    )


def _converted(sd: dict, config: MotionModuleConfig, version: str, max_frames: int | None) -> MotionModules:
    """Load a file's weights into modules of another version; only the mid-block module may be new or dropped."""
    target = dataclasses.replace(
        config, version=version, use_mid_block=version == "v2", max_frames=max_frames or default_max_frames(version)
    )
    modules = MotionModules(target)
    # Position encodings are recomputed for the new length; everything else must carry over one to one.
    weights = {k: v for k, v in sd.items() if not k.endswith("pos_encoder.pe")}
    expected = modules.state_dict()
    missing = sorted(k for k in set(expected) - set(weights) if not k.startswith("mid_block."))
    unexpected = sorted(k for k in set(weights) - set(expected) if not k.startswith("mid_block."))
    wrong = [k for k in set(weights) & set(expected) if weights[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise InputError(
            f"cannot rebuild this {config.version} motion module as {version}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}"
        )
    modules.load_state_dict({k: weights[k] for k in expected if k in weights}, strict=False)
    return modules


def init_motion_modules(model: ModelConfig, unet_config: dict) -> tuple[MotionModules, str]:
    """(motion modules to train, one line saying where they came from). Seed the RNG first: fresh weights are
    random (apart from the zero proj_out)."""
    if not model.init_motion_module:
        config = scratch_config(model, unet_config)
        design = "" if config.design == "transformer" else f"{config.design} "
        return MotionModules(config), f"new {config.version} {design}motion module (zero proj_out)"
    sd, config = read_motion_file(model.init_motion_module)
    version = model.convert_to_version
    if version is None or version == config.version:
        try:
            modules = build_from_state_dict(sd, config)
        except ValueError as err:
            raise InputError(f"{model.init_motion_module}: {err}") from None
        where = f"{config.version} motion module from {model.init_motion_module}"
    else:
        modules = _converted(sd, config, version, model.scratch.max_frames)
        where = f"{config.version} motion module from {model.init_motion_module}, rebuilt as {version}"
    unet_channels = tuple(unet_config["block_out_channels"])
    if modules.config.block_out_channels != unet_channels:
        raise InputError(
            f"{model.init_motion_module} was built for UNet channels {modules.config.block_out_channels}, "
            f"the base UNet has {unet_channels}"
        )
    return modules, where

"""What a training run trains, set up on the loaded models: the whole motion module, a MotionLoRA on its attention,
a ControlNet or SparseCtrl encoder over the frozen animation UNet, or a domain adapter on the image UNet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from animatediff.models.inflate import AnimationUNet
from animatediff.train.adapter import add_domain_adapter, is_adapter_key
from animatediff.train.config import TrainConfig
from animatediff.train.controlnet import ControlledUNet, build_control
from animatediff.train.lora import add_motion_lora


@dataclass
class TrainingMode:
    """The trained parameters and where they live."""

    trained: nn.Module
    """The module handed to Accelerate: the animation UNet, or the ControlNet wrapped around it."""
    trainable: list[nn.Parameter]
    """Exactly the parameters that learn."""
    frozen: dict[str, nn.Module]
    """Parts whose parameters must all stay frozen (the caller adds the VAE and text encoders)."""
    is_trained_key: Callable[[str], bool]
    """Which keys of `trained`'s state dict a checkpoint holds."""
    controlnet: nn.Module | None = None
    lora_scale: float | None = None
    """alpha / rank of a MotionLoRA or domain adapter, folded into its exports."""


def set_up_mode(
    config: TrainConfig, unet: AnimationUNet, image_unet: nn.Module, vae_scale_factor: int, device: torch.device
) -> TrainingMode:
    """Freeze what does not train, add what does (on `device`), and say which is which."""
    motion = unet.motion_modules
    if config.controlnet.enabled:
        motion.requires_grad_(False)
        controlnet = build_control(config.controlnet, image_unet, vae_scale_factor).to(device)
        return TrainingMode(
            ControlledUNet(controlnet, unet),
            list(controlnet.parameters()),
            {"unet": unet.unet},
            lambda key: key.startswith("controlnet."),
            controlnet=controlnet,
        )
    if config.adapter.enabled:
        motion.requires_grad_(False)
        unet.motion_enabled = False  # the domain adapter learns from single frames of the image model
        trainable = add_domain_adapter(unet.unet, config.adapter.rank, config.adapter.alpha)
        unet.to(device)  # the adapters were created on the CPU
        # The UNet's own weights are checked as the trained module's untrained ones.
        return TrainingMode(
            unet,
            trainable,
            {"motion_modules": motion},
            lambda key: key.startswith("unet.") and is_adapter_key(key),
            lora_scale=(config.adapter.alpha or config.adapter.rank) / config.adapter.rank,
        )
    motion_keys = _is_motion_key
    if config.lora.enabled:
        trainable = add_motion_lora(motion, config.lora.rank, config.lora.alpha)
        unet.to(device)
        scale = (config.lora.alpha or config.lora.rank) / config.lora.rank
        return TrainingMode(unet, trainable, {"unet": unet.unet}, motion_keys, lora_scale=scale)
    motion.requires_grad_(True)
    return TrainingMode(unet, list(motion.parameters()), {"unet": unet.unet}, motion_keys)


def _is_motion_key(key: str) -> bool:
    return key.startswith("motion_modules.")


def keep_trained_weights(
    is_trained: Callable[[str], bool], models: list, weights: list[dict], _output_dir: str
) -> None:
    """Accelerate save-state hook: keep the trained weights of the saved model state, dropping the frozen base (it
    is not trained)."""
    for sd in weights:
        for key in [k for k in sd if not is_trained(k.removeprefix("module."))]:
            del sd[key]

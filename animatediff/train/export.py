"""What a checkpoint exports: the trained weights alone, loadable by `animatediff generate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.models import MotionModules
from animatediff.train.lora import save_motion_lora_files


def export_trained(
    accelerator,  # noqa: ANN001 - accelerate.Accelerator
    model: nn.Module,
    live: MotionModules,
    folder: Path,
    lora_scale: float | None = None,
) -> None:
    """Write the motion modules of the prepared `model` into `folder`: `motion_module.safetensors` (official
    layout) and `motion_module_diffusers/` (a temporal-transformer module only); with `lora_scale`, the MotionLoRA
    in both layouts instead. Every process calls it (gathering ZeRO-3/FSDP weights is collective); the main process
    writes. `live`: the training motion modules, whose buffers (a position encoding carried in from an init file)
    are copied over."""
    motion_sd = gathered_weights(accelerator, model, "motion_modules.")
    if motion_sd is None:
        return
    if lora_scale is not None:
        save_motion_lora_files(motion_sd, lora_scale, folder)
        return
    modules = MotionModules(live.config)
    modules.load_state_dict(motion_sd, strict=True)
    for (_, buffer), (_, buffer_live) in zip(modules.named_buffers(), live.named_buffers()):
        buffer.copy_(buffer_live.cpu())
    save_motion_modules(modules, folder / "motion_module.safetensors", layout="official")
    if modules.config.design == "transformer":  # diffusers' MotionAdapter has no temporal convolution
        save_motion_modules(modules, folder / "motion_module_diffusers", layout="diffusers")


def gathered_weights(
    accelerator,  # noqa: ANN001 - accelerate.Accelerator
    model: nn.Module,
    prefix: str,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, torch.Tensor] | None:
    """The prepared `model`'s weights under `prefix` (and passing `keep`), prefix removed, as fp32 CPU tensors; None
    on every process but the main one. Every process calls it: gathering ZeRO-3/FSDP weights is collective."""
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    return {
        k.removeprefix(prefix): v.detach().float().cpu()
        for k, v in state.items()
        if k.startswith(prefix) and (keep is None or keep(k))
    }


def export_diffusers_model(accelerator, model: nn.Module, live: nn.Module, target: Path, prefix: str) -> None:  # noqa: ANN001
    """The prepared `model`'s weights under `prefix` written as the diffusers folder `target` (safetensors) of a model
    of `live`'s class and config (a ControlNet, a T2I-Adapter). Every process calls it; the main process writes."""
    weights = gathered_weights(accelerator, model, prefix)
    if weights is None:
        return
    exported = type(live).from_config(live.config)
    exported.load_state_dict(weights, strict=True)
    exported.save_pretrained(target, safe_serialization=True)

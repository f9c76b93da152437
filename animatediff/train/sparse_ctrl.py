"""SparseCtrl training on video clips (`controlnet.kind: sparsectrl`): the encoder learns to steer the frozen base
and motion module from a condition given on a few frames of each clip.

The recipe is the SparseCtrl paper's (Guo et al. 2023, Sec. 3.3): the condition is made from the clip itself and
given on randomly chosen frames, the others zero, with a mask that is 1 on the chosen ones; the encoder learns the
denoising loss through the frozen animated UNet. Here a clip gets between 1 and `max_keyframes` keyframes, frame 0
among them with probability `first_frame_rate` (image-to-video is the case users ask for most), drawn from the run's
generator so that a resumed run draws the same. Conditions: 'rgb' gives the clip's own VAE latents (the RGB
encoder's simplified embedding), an annotator (Canny) gives edge images (the scribble encoder's).

The encoder starts as a copy of the base UNet's encoder and middle with zero output convolutions and fresh motion
modules (zero output projections), so training starts from the base's own predictions; or from `controlnet.init`.
Checkpoints export it as `sparsectrl.safetensors` (official layout) and `sparsectrl_diffusers/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.sparse_ctrl import check_sparse_ctrl, load_sparse_ctrl, save_sparse_ctrl
from animatediff.models.sparse_ctrl import SparseControlNet, SparseCtrlConfig
from animatediff.pipeline.annotators import annotate

SPARSECTRL_FILE = "sparsectrl.safetensors"
SPARSECTRL_FOLDER = "sparsectrl_diffusers"


def build_sparse_ctrl(
    init: str | None, unet: UNet2DConditionModel, vae_scale_factor: int, latent_condition: bool
) -> SparseControlNet:
    """The encoder to train, in fp32: `init` (a SparseCtrl file, folder or hub id for this base), or one shaped
    after `unet` with its encoder's weights: a latent condition (RGB) or an image one brought down by the VAE's
    factor."""
    if init is not None:
        model = load_sparse_ctrl(init, unet.config).float()
        if model.sparse_config.takes_latents != latent_condition:
            kind = "latents (an RGB encoder)" if model.sparse_config.takes_latents else "images"
            raise InputError(f"controlnet.init {init} takes {kind}; controlnet.annotator asks for the other kind")
    else:
        stages = vae_scale_factor.bit_length()
        if vae_scale_factor != 1 << (stages - 1) or stages > 4:
            raise InputError(f"a VAE factor of {vae_scale_factor}: a condition embedding halves 0 to 3 times")
        config = SparseCtrlConfig(
            conditioning_channels=unet.config.in_channels if latent_condition else 3,
            simplified_embedding=latent_condition,
            embedding_channels=SparseCtrlConfig().embedding_channels[:stages],
        )
        model = SparseControlNet.from_unet(unet, config)
        check_sparse_ctrl(model.config, unet.config)
    return model.train().requires_grad_(True)


def draw_keyframes(
    videos: int, frames: int, max_keyframes: int, first_frame_rate: float, generator: torch.Generator
) -> torch.Tensor:
    """A (videos, frames) 0/1 mask: per video 1 … min(max_keyframes, frames) keyframes at random frames, frame 0
    among them with probability `first_frame_rate`."""
    mask = torch.zeros(videos, frames)
    most = min(max_keyframes, frames)
    for v in range(videos):
        count = int(torch.randint(1, most + 1, (1,), generator=generator))
        first = bool(torch.rand(1, generator=generator) < first_frame_rate)
        order = torch.randperm(frames - 1, generator=generator) + 1  # frames other than 0
        chosen = ([0] if first else []) + order[: count - int(first)].tolist()
        mask[v, chosen] = 1
    return mask


def sparse_condition(
    batch: dict, latents: torch.Tensor, annotator: str, keyframes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition (b, c, f, h, w), mask (b, 1, f, h, w)) of a batch: the clip's `latents` (b, c, f, h, w) with
    annotator 'rgb', else the annotator's images of its frames, kept on the `keyframes` (b, f) and zero elsewhere."""
    if annotator == "rgb":
        condition = latents.float()
    else:
        pixels = batch["pixel_values"]
        frames = ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 1, 3, 4, 2).cpu().numpy()
        images = torch.from_numpy(np.stack([annotate(clip, annotator) for clip in frames]))
        condition = images.permute(0, 4, 1, 2, 3).to(latents.device)
    b, _, f, h, w = condition.shape
    mask = keyframes.to(condition.device, condition.dtype).reshape(b, 1, f, 1, 1).expand(b, 1, f, h, w)
    return condition * mask, mask.contiguous()


def export_sparse_ctrl(accelerator, model: nn.Module, live: SparseControlNet, folder: Path) -> None:  # noqa: ANN001
    """Write the encoder of the prepared `model` (weights gathered on every process) to `folder`: the official file
    and the diffusers folder; `live` gives its shape."""
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    prefix = "controlnet."
    weights = {k[len(prefix) :]: v.detach().float().cpu() for k, v in state.items() if k.startswith(prefix)}
    exported = _copy_of(live)
    exported.load_state_dict(weights, strict=True)
    save_sparse_ctrl(exported, folder / SPARSECTRL_FILE)
    save_sparse_ctrl(exported, folder / SPARSECTRL_FOLDER, layout="diffusers")


def _copy_of(live: SparseControlNet) -> SparseControlNet:
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_config(live.controlnet.config)
    model = SparseControlNet.from_controlnet(controlnet, live.sparse_config)
    for name, buffer in live.motion.named_buffers():  # a position encoding carried in from an init file
        model.motion.get_buffer(name).copy_(buffer.cpu())
    return model


__all__ = ["SPARSECTRL_FILE", "SPARSECTRL_FOLDER", "build_sparse_ctrl", "draw_keyframes", "export_sparse_ctrl",
           "sparse_condition"]  # fmt: skip

"""ControlNet training on video clips: a ControlNet (Zhang, Rao & Agrawala, ICCV 2023) learns to steer the frozen
base and the frozen motion module, one control image per frame.

The recipe is ControlNet's own, run on the animated UNet: the ControlNet starts as a copy of the base UNet's encoder
and middle (`ControlNetModel.from_unet`, zero-initialized output convolutions, so training starts from the base's
own predictions) or from a given ControlNet; every frame's latents, timestep and text go through it folded into the
batch, its residuals enter the inflated UNet, and only the ControlNet learns the denoising loss. Because the motion
module is in the loop, the ControlNet learns residuals that the temporal layers carry across frames, as they are
used at inference (`pipeline/controlnet.py`).

Control images come from the clip itself: an annotator of `pipeline/annotators.py` (Canny edges) on the frames the
model learns to denoise, or, with annotator 'none', from the dataset's items (`control_values`, (f, 3, H, W) in
[0, 1]: pose skeletons, depth maps, silhouettes made beforehand).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, T2IAdapter, UNet2DConditionModel
from einops import rearrange, repeat
from torch import nn

from animatediff.errors import InputError
from animatediff.formats.controlnet import check_controlnet
from animatediff.models import AnimationUNet
from animatediff.models.sparse_ctrl import SparseControlNet
from animatediff.pipeline.annotators import annotate
from animatediff.train.config import ControlNetTrainConfig
from animatediff.train.export import export_diffusers_model
from animatediff.train.sparse_ctrl import build_sparse_ctrl, draw_keyframes, export_sparse_ctrl, sparse_condition
from animatediff.train.t2i_adapter import adapter_features, build_t2i_adapter, export_t2i_adapter

CONTROLNET_FOLDER = "controlnet"
"""Where a checkpoint of a ControlNet run exports the ControlNet (a diffusers folder, `--controlnet` loads it)."""


HINT_CHANNELS = (16, 32, 96, 256)
"""The hint encoder's stages of ControlNet's (and diffusers') default: each after the first halves the image, so SD's
8× VAE takes all four; a base whose VAE downsamples less takes the first log2(factor) + 1."""


def build_controlnet(init: str | None, unet: UNet2DConditionModel, vae_scale_factor: int = 8) -> ControlNetModel:
    """The ControlNet to train, in fp32: `init` (a ControlNet for this base: folder, hub id or single file), or a
    copy of `unet`'s encoder and middle with zero output convolutions, its hint encoder bringing control images
    down by the VAE's `vae_scale_factor`."""
    if init is None:
        stages = vae_scale_factor.bit_length()  # 8 → 4 stages, 4 → 3, 2 → 2
        if vae_scale_factor != 1 << (stages - 1) or stages > len(HINT_CHANNELS):
            raise InputError(f"a VAE factor of {vae_scale_factor}: a ControlNet's hint encoder halves 0 to 3 times")
        model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS[:stages])
    else:
        from animatediff.formats.controlnet import load_controlnet

        model = load_controlnet(init, unet)
        check_controlnet(model.config, unet.config, "controlnet.init", vae_scale_factor)
    return model.float().train().requires_grad_(True)


class ControlledUNet(nn.Module):
    """The trained ControlNet (or SparseCtrl encoder, or T2I-Adapter) and the frozen animated UNet as one module (what
    Accelerate prepares): the trained weights are the `controlnet.*` entries of its state dict."""

    def __init__(self, controlnet: ControlNetModel | SparseControlNet | T2IAdapter, unet: AnimationUNet) -> None:
        super().__init__()
        self.controlnet = controlnet
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        control: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample (b, c, f, h, w), timesteps (b,), context (b, tokens, dim); for a ControlNet or T2I-Adapter,
        control (b, f, 3, H, W) in [0, 1]; for a SparseCtrl encoder, its condition (b, c, f, h, w) and `mask` (b, 1,
        f, h, w). Returns the UNet's prediction (b, c, f, h, w)."""
        if isinstance(self.controlnet, T2IAdapter):
            features = adapter_features(self.controlnet, control)
            return self.unet(sample, timesteps, context, down_intrablock_additional_residuals=features)
        if isinstance(self.controlnet, SparseControlNet):
            down, mid = self.controlnet(sample, timesteps, context, control, mask)
        else:
            down, mid = self._controlnet_residuals(sample, timesteps, context, control)
        return self.unet(
            sample, timesteps, context, down_block_additional_residuals=tuple(down), mid_block_additional_residual=mid
        )

    def _controlnet_residuals(
        self, sample: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, control: torch.Tensor
    ) -> tuple:
        b, _, f = sample.shape[:3]
        if control.shape[:2] != (b, f):
            raise InputError(f"control images for {tuple(control.shape[:2])} (videos, frames), latents for {(b, f)}")
        dtype = next(self.controlnet.parameters()).dtype
        return self.controlnet(
            rearrange(sample, "b c f h w -> (b f) c h w").to(dtype),
            repeat(timesteps.reshape(-1).expand(b), "b -> (b f)", f=f),
            encoder_hidden_states=repeat(context, "b n d -> (b f) n d", f=f).to(dtype),
            controlnet_cond=control.flatten(0, 1).to(dtype),
            return_dict=False,
        )


def build_control(
    config: ControlNetTrainConfig, unet: UNet2DConditionModel, vae_scale_factor: int
) -> ControlNetModel | SparseControlNet:
    """What a ControlNet-mode run trains: a ControlNet, a SparseCtrl encoder (`sparse_ctrl.py`) or a T2I-Adapter
    (`t2i_adapter.py`), for `unet`."""
    if config.kind == "sparsectrl":
        return build_sparse_ctrl(config.init, unet, vae_scale_factor, latent_condition=config.annotator == "rgb")
    if config.kind == "t2i_adapter":
        return build_t2i_adapter(config.init, unet, vae_scale_factor)
    return build_controlnet(config.init, unet, vae_scale_factor)


def control_inputs(
    model: ControlNetModel | SparseControlNet,
    config: ControlNetTrainConfig,
    batch: dict,
    latents: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, ...]:
    """What `ControlledUNet` takes besides the latents, time and text for a batch whose clips encode to `latents`:
    a ControlNet's control images, or a SparseCtrl encoder's condition and mask on keyframes drawn from
    `generator`."""
    if isinstance(model, SparseControlNet):
        b, _, f = latents.shape[:3]
        keyframes = draw_keyframes(b, f, config.max_keyframes, config.first_frame_rate, generator)
        return sparse_condition(batch, latents, config.annotator, keyframes)
    return (control_images(batch, config.annotator).to(latents.device),)


def export_control(
    accelerator,  # noqa: ANN001 - accelerate.Accelerator
    model: nn.Module,
    live: ControlNetModel | SparseControlNet | T2IAdapter,
    folder: Path,
) -> None:
    """Write what the prepared `model` trained into a checkpoint's `folder` (`export_controlnet`,
    `sparse_ctrl.export_sparse_ctrl` or `t2i_adapter.export_t2i_adapter`)."""
    if isinstance(live, SparseControlNet):
        export_sparse_ctrl(accelerator, model, live, folder)
    elif isinstance(live, T2IAdapter):
        export_t2i_adapter(accelerator, model, live, folder)
    else:
        export_controlnet(accelerator, model, live, folder)


def control_images(batch: dict, annotator: str) -> torch.Tensor:
    """A batch's control images, (b, f, 3, H, W) float in [0, 1]: `annotator` run on each clip's frames
    (`pixel_values` in [-1, 1]), or with 'none' the items' own `control_values`."""
    pixels = batch["pixel_values"]
    if annotator == "none":
        control = batch.get("control_values")
        if control is None:
            raise InputError(
                "controlnet.annotator 'none' takes the control images from the dataset's items ('control_values'), "
                "and this batch has none; choose an annotator (canny) or give them"
            )
        if control.shape != pixels.shape:
            raise InputError(
                f"control_values of shape {tuple(control.shape)} for clips of shape {tuple(pixels.shape)}: give one "
                "control image per frame, at the clip's size"
            )
        return control.float()
    frames = ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 1, 3, 4, 2).cpu().numpy()
    edges = np.stack([annotate(clip, annotator) for clip in frames])
    return torch.from_numpy(edges).permute(0, 1, 4, 2, 3)


def export_controlnet(accelerator, model: nn.Module, live: ControlNetModel, folder: Path) -> None:  # noqa: ANN001
    """Write the ControlNet of the prepared `model` to `folder/controlnet` (a diffusers folder, safetensors), `live`
    giving its config. Every process calls it (gathering sharded weights is collective); the main process writes."""
    export_diffusers_model(accelerator, model, live, folder / CONTROLNET_FOLDER, "controlnet.")  # in the temp name


__all__ = [
    "CONTROLNET_FOLDER",
    "ControlledUNet",
    "build_control",
    "build_controlnet",
    "control_images",
    "control_inputs",
    "export_control",
    "export_controlnet",
]

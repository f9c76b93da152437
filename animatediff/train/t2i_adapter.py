"""T2I-Adapter training on video clips (`controlnet.kind: t2i_adapter`): a T2I-Adapter (Mou et al. 2023, arXiv
2302.08453) learns to steer the frozen base and the frozen motion module from one control image per frame.

The adapter is diffusers' full `T2IAdapter` for the base: a feature per down block, as wide, its images brought to
the latents' size by a pixel unshuffle of the VAE's factor (`pipeline/t2i_adapter.check_t2i_adapter`), randomly
initialised as the paper's (its features add to the UNet from the first step), or a given adapter (one made for one
channel, as the released sketch and Canny adapters are, takes the control images in grey). Every frame's
control image goes through it folded into the batch, and its features enter the animated UNet as
`down_intrablock_additional_residuals`, as the pipeline gives them at inference (`pipeline/t2i_adapter.py`: scale 1,
the same features for both halves of the guidance); only the adapter learns the denoising loss. Control images come
from the clip as a ControlNet's do (`controlnet.control_images`). A checkpoint exports the adapter as the diffusers
folder `t2i_adapter/`, which `--controlnet` loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import T2IAdapter, UNet2DConditionModel
from torch import nn

from animatediff.errors import InputError

T2I_ADAPTER_FOLDER = "t2i_adapter"
"""Where a checkpoint of a T2I-Adapter run exports the adapter (a diffusers folder, `--controlnet` loads it)."""

RES_BLOCKS = 2
"""Blocks per level of a fresh adapter, as the released SD1.x full adapters have."""


def build_t2i_adapter(init: str | None, unet: UNet2DConditionModel, vae_scale_factor: int = 8) -> T2IAdapter:
    """The T2I-Adapter to train, in fp32: `init` (an adapter for this base: folder, hub id or single file), or a fresh
    full adapter for `unet`'s down blocks and the VAE's `vae_scale_factor`."""
    from animatediff.pipeline.t2i_adapter import check_t2i_adapter

    if init is None:
        model = T2IAdapter(in_channels=3, channels=list(unet.config.block_out_channels), num_res_blocks=RES_BLOCKS,
                           downscale_factor=vae_scale_factor, adapter_type="full_adapter")  # fmt: skip
    else:
        from animatediff.formats.controlnet import load_controlnet

        model = load_controlnet(init, unet)
        if not isinstance(model, T2IAdapter):
            raise InputError(f"controlnet.init {init}: a ControlNet, not a T2I-Adapter; give one for controlnet.kind")
    check_t2i_adapter(model.config, unet.config, "controlnet.init", vae_scale_factor)
    return model.float().train().requires_grad_(True)


def adapter_features(adapter: T2IAdapter, control: torch.Tensor) -> list[torch.Tensor]:
    """The adapter's features of control images (b, f, 3, H, W) in [0, 1], folded as the UNet folds frames: a
    ((b·f), c, h, w) tensor per down block. An adapter made for one channel (sketch, canny) takes them in grey, as
    the pipeline gives them (`pipeline.t2i_adapter.GREY`)."""
    from animatediff.pipeline.t2i_adapter import GREY

    dtype = next(adapter.parameters()).dtype
    images = control.flatten(0, 1).to(dtype)
    if adapter.config.in_channels == 1:
        images = torch.einsum("nchw,c->nhw", images, torch.tensor(GREY, dtype=dtype, device=images.device))[:, None]
    return list(adapter(images))


def export_t2i_adapter(accelerator, model: nn.Module, live: T2IAdapter, folder: Path) -> None:  # noqa: ANN001
    """Write the adapter of the prepared `model` to `folder/t2i_adapter` (a diffusers folder, safetensors), `live`
    giving its config. Every process calls it (gathering sharded weights is collective); the main process writes."""
    from animatediff.train.export import export_diffusers_model

    export_diffusers_model(accelerator, model, live, folder / T2I_ADAPTER_FOLDER, "controlnet.")  # in the temp name


__all__ = ["T2I_ADAPTER_FOLDER", "adapter_features", "build_t2i_adapter", "export_t2i_adapter"]

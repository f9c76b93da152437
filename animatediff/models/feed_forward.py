"""The spatial feed-forward of an inflated UNet: diffusers' GEGLU with its two halves projected as two matmuls
(`models/fused_linear.gated_gelu`), the same products as one matmul and a split, with contiguous halves.

The layers keep their module, weights and names: each is given a subclass of diffusers' `GEGLU` that only changes
`forward`, and gets its own class back on removal. A wrapped or offloaded projection (a PEFT LoRA, accelerate's
sequential offload) takes diffusers' own path, as the fused attention projections do.
"""

from __future__ import annotations

import torch
from diffusers.models.activations import GEGLU

from animatediff.models.fused_linear import gated_gelu, plain_linears


class SplitGEGLU(GEGLU):
    """diffusers' `GEGLU` whose projection runs as two contiguous halves where it is a plain linear."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not plain_linears((self.proj,), hidden_states.device):
            return super().forward(hidden_states, *args, **kwargs)
        return gated_gelu(hidden_states, self.proj)


def split_geglus(unet: torch.nn.Module) -> list[GEGLU]:
    """Give every plain diffusers `GEGLU` in `unet` the split forward; returns the layers changed."""
    changed = [module for module in unet.modules() if type(module) is GEGLU]
    for module in changed:
        module.__class__ = SplitGEGLU
    return changed


def restore_geglus(layers: list[GEGLU]) -> None:
    """Undo `split_geglus`."""
    for module in layers:
        if type(module) is SplitGEGLU:
            module.__class__ = GEGLU

"""Linear layers read as weights: projections of one input run as one matmul over their stacked weights (fused
q, k, v), or one layer's output computed in parts, where that computes what calling the layers does."""

from __future__ import annotations

import torch
from torch import nn


def plain_linears(layers: tuple[nn.Module, ...], device: torch.device, bias: bool | None = None) -> bool:
    """Whether every layer is a plain `nn.Linear` whose weights are in place on `device`, so that reading its weights
    is the same as calling it: not wrapped (a PEFT LoRA adds its own path), not hooked (accelerate's sequential
    offload moves a layer's weights in only when the layer is called). `bias`: each must have one (True), or none
    (False); None: either."""
    return all(
        type(layer) is nn.Linear
        and getattr(layer, "_hf_hook", None) is None
        and layer.weight.device == device
        and (bias is None or (layer.bias is not None) == bias)
        for layer in layers
    )


def stacked_projection(x: torch.Tensor, layers: tuple[nn.Linear, ...]) -> torch.Tensor:
    """The bias-free `layers` applied to x, their outputs side by side on the last axis, in one matmul."""
    return nn.functional.linear(x, torch.cat([layer.weight for layer in layers]))

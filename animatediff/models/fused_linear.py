"""Linear layers read as weights: projections of one input run as one matmul over their stacked weights (fused
q, k, v), or one layer's output computed in parts (a GEGLU's two halves), where that computes what calling the layers
does; and a projection's fresh output given its residual in its own buffer."""

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


def gated_gelu(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """GEGLU (Shazeer 2020) over a plain projection whose output halves are (value, gate): value · gelu(gate). The two
    halves run as two matmuls, so each comes out contiguous, which the elementwise product runs over faster than over
    strided halves of one output. Without autograd the GELU and the product run in the halves' own (fresh) buffers,
    two activation-sized allocations fewer; with autograd their backward needs the tensors as they were."""
    inner = proj.out_features // 2
    weight, bias = proj.weight, proj.bias
    value = nn.functional.linear(x, weight[:inner], None if bias is None else bias[:inner])
    gate = nn.functional.linear(x, weight[inner:], None if bias is None else bias[inner:])
    if torch.is_grad_enabled():
        return value * nn.functional.gelu(gate)
    return value.mul_(torch.ops.aten.gelu_(gate))


def plus_residual(out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """out + residual, written into `out`, a projection's fresh output that nothing else holds (its backward does not
    read it), where that is the same tensor the sum would be: same shape and dtype (under autocast a half-precision
    output plus a float32 residual is a float32 sum, which `out` cannot hold)."""
    if out.shape != residual.shape or out.dtype != residual.dtype:
        return out + residual
    return out.add_(residual)

"""Classifier-free guidance (Ho & Salimans 2022) around any noise predictor."""

from __future__ import annotations

from collections.abc import Callable

import torch

NoisePredictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided(
    predict: NoisePredictor,
    uncond: torch.Tensor,
    cond: torch.Tensor,
    guidance_scale: float,
    guidance_rescale: float = 0.0,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """x, t ↦ ε_u + s·(ε_c − ε_u), evaluating [uncond, cond] in one batch; plain ε_c when s ≤ 1.

    `guidance_rescale` φ (Lin et al. 2024, as diffusers' `guidance_rescale`) blends in the guided prediction
    rescaled to the conditional one's standard deviation per video: a zero-terminal-SNR model otherwise comes out
    over-exposed at high guidance."""
    if not 0.0 <= guidance_rescale <= 1.0:
        raise ValueError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
    if guidance_scale <= 1.0:
        return lambda x, t: predict(x, t, cond)
    context = torch.cat([uncond, cond])

    def predict_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_uncond, eps_cond = predict(torch.cat([x, x]), t, context).chunk(2)
        out = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        if guidance_rescale > 0:
            dims = tuple(range(1, out.ndim))
            rescaled = out * (eps_cond.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True))
            out = guidance_rescale * rescaled + (1 - guidance_rescale) * out
        return out

    return predict_guided

"""Classifier-free guidance (Ho & Salimans 2022) around any noise predictor."""

from __future__ import annotations

from collections.abc import Callable

import torch

NoisePredictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided(
    predict: NoisePredictor, uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """x, t ↦ ε_u + s·(ε_c − ε_u), evaluating [uncond, cond] in one batch; plain ε_c when s ≤ 1."""
    if guidance_scale <= 1.0:
        return lambda x, t: predict(x, t, cond)
    context = torch.cat([uncond, cond])

    def predict_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps_uncond, eps_cond = predict(torch.cat([x, x]), t, context).chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    return predict_guided

"""Classifier-free guidance (Ho & Salimans 2022) around any predictor, and perturbed-attention guidance (PAG, Ahn et
al. 2024) beside it."""

from __future__ import annotations

from collections.abc import Callable

import torch

from animatediff.errors import InputError
from animatediff.sampling.loop import Denoiser, Predictor


def guided(
    predict: Predictor,
    uncond: torch.Tensor | None,
    cond: torch.Tensor,
    guidance_scale: float,
    guidance_rescale: float = 0.0,
    perturbed: Predictor | None = None,
    perturbed_scale: Callable[[torch.Tensor], float] | None = None,
) -> Denoiser:
    """x, t ↦ ε_u + s·(ε_c − ε_u) over the whole clip, evaluating [uncond, cond] in one batch; plain ε_c when
    s ≤ 1 (then `uncond` may be None).

    `perturbed`: PAG's predictor (the same model with some self-attention made the identity), whose conditional
    prediction ε_p the guidance pushes away from: + p(t)·(ε_c − ε_p), p(t) from `perturbed_scale`, as diffusers'
    PAG pipelines add it.

    `guidance_rescale` φ (Lin et al. 2024, as diffusers' `guidance_rescale`) blends in the guided prediction
    rescaled to the conditional one's standard deviation per video: a zero-terminal-SNR model otherwise comes out
    over-exposed at high guidance."""
    if not 0.0 <= guidance_rescale <= 1.0:
        raise InputError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
    if guidance_scale <= 1.0 and perturbed is None:
        return lambda x, t: predict(x, t, cond, torch.arange(x.shape[2], device=x.device))
    context = None if guidance_scale <= 1.0 else torch.cat([uncond, cond])

    def predict_guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        frames = torch.arange(x.shape[2], device=x.device)
        if context is None:
            out = eps_cond = predict(x, t, cond, frames)
        else:
            eps_uncond, eps_cond = predict(torch.cat([x, x]), t, context, frames).chunk(2)
            out = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        if perturbed is not None:
            out = out + perturbed_scale(t) * (eps_cond - perturbed(x, t, cond, frames))
        if guidance_rescale > 0:
            dims = tuple(range(1, out.ndim))
            rescaled = out * (eps_cond.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True))
            out = guidance_rescale * rescaled + (1 - guidance_rescale) * out
        return out

    return predict_guided

"""Conditions: what steers the UNet besides the text, and the innermost predictor that applies them.

A condition is a small object that, for the latents of one denoising call, gives keyword arguments for the 2-D
UNet: residuals added to its skip connections and middle (ControlNet, SparseCtrl: `down_block_additional_residuals`,
`mid_block_additional_residual`) or extra embeddings (IP-Adapter: `added_cond_kwargs`). It is handed the indices
of the frames it is asked for, so under context windows each window gets its own control frames, as it gets its own
text. Several conditions compose: residuals under the same name add up, mappings merge.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol

import torch

from animatediff.models import AnimationUNet
from animatediff.sampling import Predictor


class Condition(Protocol):
    """One source of UNet keyword arguments (see the module docstring)."""

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        """Keyword arguments for the 2-D UNet on latents x (b, c, f, h, w) holding the clip's `frames`, with frames
        folded into the batch ((b·f), ...) as the inflated UNet runs them."""
        ...


def guidance_half(condition: object, negative: bool) -> object | None:
    """A ControlNet-like condition (its `guided` and `guess_mode`) for an unguided prediction of one half of its
    guidance, as parts sharing one unconditional prediction make them (`regions.regional`): a copy that sees its
    whole batch, or None for the negative half in guess mode, which gets no residuals."""
    if negative and condition.guess_mode:
        return None
    half = copy.copy(condition)
    half.guided = False
    return half


def guidance_halves(conditions: Sequence[Condition], negative: bool) -> list[Condition] | None:
    """Each of `conditions` for one half of the guidance (its `half(negative)`, those with nothing for that half
    left out); None where one of them cannot be split so."""
    if not all(hasattr(c, "half") for c in conditions):
        return None
    return [h for c in conditions if (h := c.half(negative)) is not None]


def merge_unet_kwargs(parts: Sequence[dict[str, object]]) -> dict[str, object]:
    """One set of UNet keyword arguments from several conditions': tensors (and sequences of tensors) under the
    same name are summed, mappings merged; two conditions setting the same key of a mapping is an error."""
    merged: dict[str, object] = {}
    for part in parts:
        for key, value in part.items():
            if key not in merged:
                merged[key] = value
            elif isinstance(value, torch.Tensor):
                merged[key] = merged[key] + value
            elif isinstance(value, (list, tuple)):
                merged[key] = type(value)(a + b for a, b in zip(merged[key], value, strict=True))
            elif isinstance(value, dict):
                clash = sorted(set(merged[key]) & set(value))
                if clash:
                    raise ValueError(f"two conditions both set {key}[{clash[0]!r}]")
                merged[key] = {**merged[key], **value}
            else:
                raise ValueError(f"cannot combine two conditions' {key!r} ({type(value).__name__})")
    return merged


def unet_predictor(unet: AnimationUNet, conditions: Sequence[Condition] = ()) -> Predictor:
    """The inflated UNet as a `Predictor`, with the keyword arguments of `conditions` added to every call."""

    def predict(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        kwargs = merge_unet_kwargs([c.unet_kwargs(x, t, text, frames) for c in conditions])
        return unet(x, t, text, **kwargs)

    return predict

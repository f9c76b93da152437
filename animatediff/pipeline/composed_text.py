"""A call's prompt read as A1111's composable prompts (`prompt_and`): its `AND` parts, each read as a prompt of its
own, and the weights that put their guided predictions together (`regions.regional` sums them).

Each part's guided prediction is ε_u + s(εᵢ − ε_u); weighted by wᵢ and summed with the unconditional prediction's
weight 1 − Σwᵢ, they make A1111's ε_u + s Σᵢ wᵢ (εᵢ − ε_u). The unconditional prediction is the negative prompt's
text on both halves of the guided batch. Where the parts share one unconditional prediction (`regions.regional`),
that part is ε_u itself and each part costs one UNet pass beside it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from animatediff.errors import InputError
from animatediff.pipeline.text import CallText, TextConditioning
from animatediff.prompt_and import composed_parts


def read_and(
    prompt_and: bool, texts: tuple, read: Callable[[tuple], CallText], guidance: bool, regions: bool, editing: bool
) -> list[tuple[CallText, float]]:
    """[(each part read as the call's text (`read`), its weight)], or [] where the prompt is read as one text (off,
    or `composed_parts` finds one part of weight 1); one line for what composable prompts do not go with: a batch or
    keyframes with AND, no guidance, regions, prompt editing."""
    parts = composed_parts(texts[0]) if prompt_and else None
    if parts is None:
        return []
    if not guidance:
        raise InputError("composable prompts (AND) need classifier-free guidance (a guidance scale above 1)")
    if regions or editing:
        raise InputError("composable prompts (AND) are read without regions and prompt editing; use one of them")
    return [(read((text, *texts[1:])), weight) for text, weight in parts]


def unconditional(text: TextConditioning) -> TextConditioning:
    """The negative prompt's text on both halves: its guided prediction is the unconditional one."""
    return TextConditioning(text.uncond, text.uncond, text.pooled_uncond, text.pooled_uncond)


def and_weights(weights: list[float], num_frames: int, latent: tuple[int, int]) -> torch.Tensor:
    """(parts + 1, frames, h, w): each part's weight everywhere, then the unconditional prediction's, 1 − Σ weights."""
    values = torch.tensor([*weights, 1.0 - sum(weights)])
    return values[:, None, None, None].expand(-1, num_frames, *latent).clone()

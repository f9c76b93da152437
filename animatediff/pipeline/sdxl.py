"""SDXL's extra conditioning: the pooled text and the size conditioning ("time ids": original size, crop corner,
target size), handed to the UNet's `added_cond_kwargs` as a condition (`pipeline.conditions`), and to the added
embeddings of the SDXL ControlNets bound to the same text (`with_sdxl`).

Both are per video (the pooled text per frame under prompt travel) and repeated over the video's frames, as
diffusers' UNetMotionModel repeats its added embedding; under guidance the unconditional half of the batch gets the
negative prompts' pooled text and, as diffusers' AnimateDiffSDXLPipeline does by default, the same time ids.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from einops import repeat

from animatediff.pipeline.text import TextConditioning


def time_ids(
    height: int,
    width: int,
    original_size: tuple[int, int] | None = None,
    crop_top_left: tuple[int, int] = (0, 0),
    target_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(1, 6): original (h, w), crop corner (top, left), target (h, w); sizes default to the output's."""
    original = original_size or (height, width)
    target = target_size or (height, width)
    return torch.tensor([[*original, *crop_top_left, *target]], dtype=torch.float32)


@dataclass
class SDXLConditioning:
    """The pooled text and time ids for every UNet call of one run."""

    pooled: torch.Tensor
    """(b, P) or, under prompt travel, (b, f, P)."""
    pooled_uncond: torch.Tensor | None
    ids: torch.Tensor
    """(1, 6)."""

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        f = x.shape[2]
        pooled = self.pooled
        if self.pooled_uncond is not None and x.shape[0] == 2 * pooled.shape[0]:  # the guided batch [uncond, cond]
            pooled = torch.cat([self.pooled_uncond, pooled])
        if pooled.ndim == 3:  # per frame: this call's frames
            pooled = pooled[:, frames.to(pooled.device)].flatten(0, 1)
        else:
            pooled = repeat(pooled, "b p -> (b f) p", f=f)
        ids = self.ids.to(x.device, x.dtype).expand(pooled.shape[0], -1)
        return {"added_cond_kwargs": {"text_embeds": pooled.to(x.dtype), "time_ids": ids}}


T = TypeVar("T")


def with_sdxl(condition: T, sizes: Sequence[SDXLConditioning]) -> T:
    """`condition` for one text of an SDXL base: where it has an `sdxl` slot (a ControlNet's, keyframe or not, for
    its added embeddings), a copy holding that text's pooled text and size ids (`sizes`, from `sdxl_conditions`);
    else, and for SD1.x (`sizes` empty), itself."""
    if not sizes or not hasattr(condition, "sdxl"):
        return condition
    bound = copy.copy(condition)
    bound.sdxl = sizes[0]
    return bound


def sdxl_conditions(text: TextConditioning, height: int, width: int) -> list[SDXLConditioning]:
    """The SDXL condition of a run at height × width; none for SD1.x text (no pooled part)."""
    if text.pooled is None:
        return []
    return [SDXLConditioning(text.pooled, text.pooled_uncond, time_ids(height, width))]

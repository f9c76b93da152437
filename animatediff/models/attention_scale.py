"""The motion modules' attention scale: ComfyUI-AnimateDiff-Evolved's motion "scale" (its scale multival), a
multiplier s on the temporal attention's keys, softmax(s·QKᵀ/√d)V. Above 1 each frame attends more sharply to the
frames most like it; below 1 more evenly to all of them (0: every frame takes the clip's mean value). It is one
number for every position and frame, or a map (f, h, w) of multipliers, one per frame and latent pixel, resized to
each module's feature size (bilinear) as Evolved's mask multival scales the keys per position and frame.

It is not the motion scale (`models/motion_scale.py`, Evolved's effect multival), which blends what the modules
add into their input; the two can be used together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from animatediff.errors import non_negative

AttentionScale = float | torch.Tensor
"""One multiplier for every key, or a map (f, h, w) of them over a call's frames and latent pixels."""


def check_attention_scale(scale: object, what: str = "motion attention scale") -> float:
    """A number ≥ 0, or one line."""
    return non_negative(scale, what, "1: as trained, above: sharper, below: more even")


def key_scales(scale: AttentionScale, videos: int, height: int, width: int) -> float | torch.Tensor:
    """The keys' multiplier in one motion module call on `videos` clips of height × width features: the number
    itself, or the map resized to height × width as (videos·height·width, f), the order of the module's sequences
    ((b h w), f, c)."""
    if not isinstance(scale, torch.Tensor):
        return float(scale)
    if tuple(scale.shape[-2:]) != (height, width):
        scale = F.interpolate(scale[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return scale.permute(1, 2, 0).reshape(height * width, -1).repeat(videos, 1)


def scaled_keys_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """SDPA over (n, heads, f, d) with the keys multiplied by `scale`: a number (folded into the softmax scale; 1 is
    plain SDPA, bit for bit), or (n, f), one multiplier per sequence and frame."""
    if isinstance(scale, torch.Tensor):
        if scale.shape != (k.shape[0], k.shape[2]):
            raise ValueError(f"key scales {tuple(scale.shape)} do not fit {k.shape[0]} sequences of {k.shape[2]} keys")
        return F.scaled_dot_product_attention(q, k * scale[:, None, :, None].to(k.dtype), v)
    if scale == 1:
        return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, scale=scale / math.sqrt(q.shape[-1]))

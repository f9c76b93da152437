"""A temporal-convolution motion module: the other design of the paper's module-design ablation.

Guo et al., AnimateDiff (ICLR 2024, arXiv 2307.04725), Sec. 5.3, compare the temporal transformer with a temporal
convolution of about the same parameter count, and find that the convolution leaves the frames nearly identical (no
motion). This is that convolution. At each insertion point the pixels join the batch and every pixel's channels are
convolved over the frame axis only — 1-D convolutions of kernel size 3, padded so the frame count is kept:

    x ((b f), c, h, w) → GroupNorm (per frame, or over the clip) → (b h w, c, f)
      → proj_in → blocks (LayerNorm over channels → conv c → 3c → SiLU → conv 3c → c, + residual) → proj_out
      → ((b f), c, h, w) + x

`proj_out` starts at zero, so a fresh module adds nothing, as the transformer's zero proj_out does. Every layer that
mixes frames is a kernel-3 convolution, so one module sees `reach` = 2 + 2·num_blocks frames on each side.

Parameters per module at c channels and n blocks: 6c² + 4c + n·(18c² + 6c), against the transformer's
2c² + 4c + n·(20c² + 17c) (two attentions of 4c², a GEGLU feed-forward of 12c²) — at the released n = 1,
24c² + 10c against 22c² + 21c: 1.09× at SD1.5's widths, 1.07× at 32 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

KERNEL_SIZE = 3
"""Frames each convolution sees: the frame itself and one on each side."""
EXPANSION = 3
"""Width of a block's hidden convolution, in multiples of the channels."""


def input_norm(norm: nn.GroupNorm, x: torch.Tensor, num_frames: int, over_frames: bool) -> torch.Tensor:
    """A motion module's input GroupNorm on x ((b f), c, h, w): statistics per frame, or (`over_frames`) over the
    channels, frames and pixels of each group of a clip, as the official SDXL module's are."""
    if not over_frames:
        return norm(x)
    clip = rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)
    # Called as a module, so hooks on it (accelerate's offload) see the call.
    return rearrange(norm(clip), "b c f h w -> (b f) c h w")


def temporal_conv(in_channels: int, out_channels: int) -> nn.Conv1d:
    """A 1-D convolution over frames, (n, in, f) → (n, out, f): kernel 3, zero padding 1 keeps the frame count."""
    return nn.Conv1d(in_channels, out_channels, KERNEL_SIZE, padding=KERNEL_SIZE // 2)


class TemporalConvBlock(nn.Module):
    """Pre-norm residual block: LayerNorm over each frame's channels → conv (c → 3c) → SiLU → conv (3c → c), +
    input. LayerNorm rather than GroupNorm, so no statistic spans frames (as the transformer blocks' norms)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv1 = temporal_conv(dim, dim * EXPANSION)
        self.conv2 = temporal_conv(dim * EXPANSION, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, c, f); the norm wants channels last.
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.conv2(F.silu(self.conv1(h))) + x


class TemporalConvolution(nn.Module):
    """GroupNorm → proj_in → `num_blocks` convolution blocks → proj_out (zero-initialized) → + input, every
    convolution along frames only (module docstring). `norm_over_frames`: the input norm's statistics span the clip."""

    def __init__(self, dim: int, num_blocks: int = 1, norm_groups: int = 32, norm_over_frames: bool = False) -> None:
        super().__init__()
        self.norm_over_frames = norm_over_frames
        self.norm = nn.GroupNorm(norm_groups, dim, eps=1e-6, affine=True)
        self.proj_in = temporal_conv(dim, dim)
        self.conv_blocks = nn.ModuleList([TemporalConvBlock(dim) for _ in range(num_blocks)])
        self.proj_out = temporal_conv(dim, dim)
        # Zero output projection: a fresh module adds nothing, so the inflated UNet starts as the image model.
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.chunk: int | None = None
        """Run the convolutions on this many of the (b·h·w) frame sequences at a time (the memory option
        `ff_chunk`); each sequence is computed alone either way. None (the default): all at once."""

    @property
    def reach(self) -> int:
        """How many frames on each side of a frame reach its output: one per kernel-3 convolution."""
        return (2 + 2 * len(self.conv_blocks)) * (KERNEL_SIZE // 2)

    def convolve(self, h: torch.Tensor) -> torch.Tensor:
        """proj_in → blocks → proj_out on frame sequences: (n, c, f) → (n, c, f)."""
        h = self.proj_in(h)
        for block in self.conv_blocks:
            h = block(h)
        return self.proj_out(h)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: ((b f), c, h, w). contiguous(): see TemporalTransformer.forward (CPU GroupNorm backward, channels-last).
        _, _, height, width = x.shape
        h = input_norm(self.norm, x.contiguous(), num_frames, self.norm_over_frames)
        h = rearrange(h, "(b f) c h w -> (b h w) c f", f=num_frames)  # every pixel a sequence of frames
        if self.chunk is None or self.chunk >= h.shape[0]:
            h = self.convolve(h)
        else:
            h = torch.cat([self.convolve(part) for part in h.split(self.chunk)])
        h = rearrange(h, "(b h w) c f -> (b f) c h w", h=height, w=width)
        return h + x


__all__ = ["TemporalConvolution", "TemporalConvBlock", "input_norm"]

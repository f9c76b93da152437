"""Window-fused temporal attention: the motion modules' half of FreeNoise.

Qiu et al., "FreeNoise: Tuning-Free Longer Video Diffusion via Noise Rescheduling", ICLR 2024 (arXiv 2310.15169),
Sec. 3.3 and Eq. 9, as diffusers' `FreeNoiseTransformerBlock` runs it (`AnimateDiffPipeline.enable_free_noise`).
Each temporal transformer block runs its attention sub-layers (norm → attention with the position encoding of
frames 0…length−1 → residual) on sliding windows of `length` frames that start every `stride` frames, the last one
snapped to the clip's end, and fuses the windows' outputs per frame as Σ w·h / Σ w with per-frame weights; the
feed-forward then runs on the fused frames. Everything else of the UNet (the motion module's per-frame norm,
its projections, the spatial layers) sees the whole clip at once, so a clip may be longer than the position
encoding.

One departure from diffusers 0.42: where the last window is snapped back (windows that do not end on the clip's
last frame), diffusers divides the frames only that window covers by the weight of its first such frame instead of
each frame's own weight (an indexing slip, harmless with 'flat' weights); here every frame is divided by its own
weights, so such a frame is exactly what the last window gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from animatediff.errors import InputError

WEIGHTINGS = ("flat", "pyramid", "delayed_reverse_sawtooth")
"""Per-frame fusion weights inside a window, by diffusers' names."""


@dataclass(frozen=True)
class AttentionWindows:
    """Where the motion modules attend: sliding windows of frames, fused with per-frame weights."""

    length: int
    """Frames per window (at most the motion module's position encoding, checked where it is switched on)."""
    stride: int = 4
    """Frames between the starts of neighbouring windows, 1…length (a larger stride would leave frames out)."""
    weighting: str = "pyramid"
    """'flat' [1, 1, 1, 1], 'pyramid' [1, 2, 2, 1] / [1, 2, 3, 2, 1], or 'delayed_reverse_sawtooth'
    [0.01, 2, 2, 1] / [0.01, 0.01, 3, 2, 1]: low weights early in a window, falling ones late."""

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise InputError(f"FreeNoise context_length {self.length!r} must be a whole number of frames ≥ 1")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or not 1 <= self.stride <= self.length:
            raise InputError(
                f"FreeNoise context_stride {self.stride!r} must be a whole number from 1 to the context length "
                f"{self.length}"
            )
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"FreeNoise weighting {self.weighting!r} is not one of: {', '.join(WEIGHTINGS)}")


def window_spans(num_frames: int, length: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of each window: starts 0, stride, 2·stride, … while a whole window fits, then one snapped to
    the clip's end if the last did not reach it; one window of the whole clip when it is no longer than `length`."""
    if num_frames <= length:
        return [(0, num_frames)]
    spans = [(start, start + length) for start in range(0, num_frames - length + 1, stride)]
    if spans[-1][1] < num_frames:
        spans.append((num_frames - length, num_frames))
    return spans


def window_weights(length: int, weighting: str = "pyramid") -> torch.Tensor:
    """The per-frame fusion weights of one window, as diffusers' `FreeNoiseTransformerBlock._get_frame_weights`."""
    mid = (length + 1) // 2
    if weighting == "flat":
        weights = [1.0] * length
    elif weighting == "pyramid":
        rise = list(range(1, mid + 1)) if length % 2 == 0 else list(range(1, mid))
        weights = rise + ([] if length % 2 == 0 else [mid]) + rise[::-1]
    elif weighting == "delayed_reverse_sawtooth":
        low = [0.01] * (mid - 1) + [mid] if length % 2 == 0 else [0.01] * mid
        weights = low + list(range(mid, 0, -1))
    else:
        raise InputError(f"FreeNoise weighting {weighting!r} is not one of: {', '.join(WEIGHTINGS)}")
    return torch.tensor(weights, dtype=torch.float32)


def fused_windows(
    x: torch.Tensor, attend: Callable[..., torch.Tensor], windows: AttentionWindows, *per_frame: torch.Tensor
) -> torch.Tensor:
    """`attend` (sequences (n, frames, c) → the same shape) run on each window of x's frames and fused per frame;
    each of `per_frame` ((n, frames), as a key scale map) is given to it too, at the window's frames.

    A snapped last window adds only the frames no earlier window covers. With a single window (a clip no longer
    than `windows.length`) this is `attend(x, *per_frame)` itself, bit for bit."""
    num_frames = x.shape[1]
    spans = window_spans(num_frames, windows.length, windows.stride)
    if len(spans) == 1:
        return attend(x, *per_frame)
    weights = window_weights(windows.length, windows.weighting).to(x.device).view(1, -1, 1)
    total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    norm = torch.zeros(1, num_frames, 1, dtype=torch.float32, device=x.device)
    for i, (start, end) in enumerate(spans):
        out = attend(x[:, start:end], *(t[:, start:end] for t in per_frame)).float() * weights
        # A last window snapped back to the clip's end (its start is off the stride) adds only its new frames.
        skip = spans[i - 1][1] - start if i == len(spans) - 1 and start % windows.stride else 0
        total[:, start + skip : end] += out[:, skip:]
        norm[:, start + skip : end] += weights[:, skip:]
    return (total / norm).to(x.dtype)

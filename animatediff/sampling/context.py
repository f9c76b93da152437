"""Sliding context windows: denoise clips longer than the motion module's position encoding.

Each step runs the predictor on overlapping windows of frames and fuses the predictions, per frame, as
Σ w·ε / Σ w — the "static" schedule and "pyramid" weights of ComfyUI-AnimateDiff-Evolved (windows start at
0, L−O, 2(L−O), …, the last one snapped to the clip's end; weights rise 1…L/2 and fall back to 1). A window passes
its frames' indices on, so per-frame text and conditions follow their frames.
"""

from __future__ import annotations

import torch

from animatediff.errors import InputError
from animatediff.sampling.loop import Predictor


def context_windows(num_frames: int, length: int = 16, overlap: int = 4) -> list[list[int]]:
    """Frame indices of each window; one window when the clip fits."""
    if length < 1 or not 0 <= overlap < length:
        raise InputError(f"context length {length} with overlap {overlap}: need length ≥ 1 and 0 ≤ overlap < length")
    if num_frames <= length:
        return [list(range(num_frames))]
    step = length - overlap
    starts = list(range(0, num_frames - length, step)) + [num_frames - length]
    return [list(range(s, s + length)) for s in starts]


def window_weights(length: int, fuse: str = "pyramid") -> torch.Tensor:
    """Per-frame weights inside one window: 'pyramid' favours a window's centre, 'flat' averages."""
    if fuse == "flat":
        return torch.ones(length)
    if fuse == "pyramid":
        half = torch.arange(1, (length + 1) // 2 + 1, dtype=torch.float32)
        return torch.cat([half, half.flip(0)[length % 2 :]])
    raise InputError(f"unknown context fuse {fuse!r}; expected 'pyramid' or 'flat'")


def windowed(
    predict: Predictor, num_frames: int, length: int = 16, overlap: int = 4, fuse: str = "pyramid"
) -> Predictor:
    """Wrap a predictor so it only ever sees `length` frames at a time."""
    windows = context_windows(num_frames, length, overlap)
    if len(windows) == 1:
        return predict
    weights = window_weights(length, fuse)

    def predict_windowed(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x, dtype=torch.float32)
        norm = torch.zeros(num_frames, dtype=torch.float32, device=x.device)
        w = weights.to(x.device)
        for window in windows:
            idx = torch.tensor(window, device=x.device)
            # Per-frame text (b, f, n, d) follows its frames; a per-video text (b, n, d) is shared.
            window_text = text[:, idx] if text.ndim == 4 else text
            out = predict(x[:, :, idx], t, window_text, frames[idx]).float()
            total[:, :, idx] += out * w.view(1, 1, -1, 1, 1)
            norm[idx] += w
        return (total / norm.view(1, 1, -1, 1, 1)).to(x.dtype)

    return predict_windowed

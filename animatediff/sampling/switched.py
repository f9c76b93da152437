"""A denoiser that changes during the run: one denoiser per run of steps (prompt editing's text, for one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from animatediff.sampling.loop import Denoiser


def switched_at_steps(parts: Sequence[tuple[int, Denoiser]], timesteps: torch.Tensor) -> Denoiser:
    """The denoiser that is `parts[k][1]` from the 0-based step `parts[k][0]` of `timesteps` on (steps counted over
    its distinct timesteps, so a second-order scheduler's repeated ones count once; `parts` in step order, the first
    from step 0). A call is placed by its noise level: at or below step k's timestep it is in step k's run, so a run
    of the same schedule with fewer steps (FreeInit's coarse-to-fine) switches at the same noise levels."""
    if len(parts) == 1:
        return parts[0][1]
    distinct = list(dict.fromkeys(float(t) for t in timesteps))
    starts = [distinct[first] for first, _ in parts]

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        level = float(t)
        part = parts[0][1]
        for start, (_, denoiser) in zip(starts, parts, strict=True):
            if level <= start:
                part = denoiser
        return part(x, t)

    return denoise


def merged_runs(*runs: Sequence[tuple[int, Any]]) -> list[tuple[int, tuple]]:
    """Several things that each change at their own steps ([(first step, value)] each, in step order, from step 0)
    as one list of runs: [(first step, (each thing's value over it))], a new run wherever any of them changes."""
    starts = sorted({first for run in runs for first, _ in run})
    return [(step, tuple([v for first, v in run if first <= step][-1] for run in runs)) for step in starts]

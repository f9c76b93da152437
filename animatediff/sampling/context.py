"""Sliding context windows: denoise clips longer than the motion module's position encoding.

Each step runs the predictor on windows of at most `length` frames and fuses the predictions per frame as
Σ w·ε / Σ w over the windows holding that frame, with per-frame weights w of the window (the context options of
ComfyUI-AnimateDiff-Evolved, "ADE", whose names are used here). `ContextSchedule` says where the windows lie
(`context_schedules.py`: `static`, `uniform`, `looped`; `closed_loop` wraps them around the clip's end) and how they
are weighed (`fuse`). A window passes its frames' indices on, so per-frame text and conditions follow their frames.
One window holding the whole clip is the plain predictor itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from animatediff.errors import InputError
from animatediff.sampling.context_schedules import looped_windows, static_windows, uniform_windows
from animatediff.sampling.loop import Predictor

logger = logging.getLogger("animatediff")

SCHEDULES = ("static", "uniform", "looped")
FUSE_METHODS = ("flat", "pyramid", "overlap-linear", "relative")
RAMP_FLOOR = 1e-6
"""The lowest overlap-linear weight (ADE: 1e-37): never 0, so a frame only ramp ends cover still has a mean, and
far enough above float32's smallest normal numbers that w·ε keeps its precision."""


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ContextSchedule:
    """Where the context windows lie and how their predictions are fused (ADE's context options)."""

    length: int = 16
    """Frames per window, ≥ 1; at most the motion module's position encoding (the pipeline checks that)."""
    overlap: int = 4
    """Frames neighbouring windows share, 0 … length−1; the windows' starts lie length − overlap apart."""
    stride: int = 1
    """`uniform` only: windows at strides 1, 2, 4, … 2^(stride−1) (every frame, every 2nd, …), as ADE's
    context_stride; 1 is one stride. Strides whose windows would span more than the clip are left out."""
    schedule: str = "static"
    """'static': starts 0, L−O, 2(L−O), …, the last snapped to the clip's end, the same at every step.
    'uniform': at every stride, shifted at each step by a different fraction of the clip (the seams move).
    'looped': the static starts continued around the clip's end, so the last frames share windows with the first
    (always closed: `closed_loop` reads True)."""
    fuse: str = "pyramid"
    """Per-frame weights w_k, k = 0 … L−1 the frame's place in its window (c = (L−1)/2 its centre):
    'flat': w = 1, the plain mean.
    'pyramid': w = min(k, L−1−k) + 1, i.e. 1, 2, …, ⌈L/2⌉, …, 2, 1 (FreeNoise's weighted fusion).
    'overlap-linear': w = 1 but across the first `overlap` places, rising linearly from ≈0 to 1 (0.000001 for
    ADE's 1e-37), and across the last ones, falling from 1 to ≈0, except on a side where the window starts on the
    clip's first frame or ends on its last (every side ramps in a closed loop, where the clip has no ends).
    'relative': w = max(0.01, 1 − |k − c| / (c + 0.005)), a linear tent (ADE's running weighted mean, with the
    window's centre taken by place, so wrapped windows weigh as any other)."""
    closed_loop: bool = False
    """Windows wrap around the clip's end, so its last frame is denoised together with its first (a seamless
    loop): for 'uniform'; 'looped' always wraps; 'static' never does (asking for it is an error)."""

    def __post_init__(self) -> None:
        if not _whole(self.length) or self.length < 1:
            raise InputError(f"context length {self.length!r} must be a whole number of frames ≥ 1")
        if not _whole(self.overlap) or not 0 <= self.overlap < self.length:
            raise InputError(
                f"context overlap {self.overlap!r} must be from 0 to the context length − 1 ({self.length - 1})"
            )
        if not _whole(self.stride) or self.stride < 1:
            raise InputError(f"context stride {self.stride!r} must be a whole number ≥ 1")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown context schedule {self.schedule!r}; expected one of: {', '.join(SCHEDULES)}")
        if self.fuse not in FUSE_METHODS:
            raise InputError(f"unknown context fuse {self.fuse!r}; expected one of: {', '.join(FUSE_METHODS)}")
        if self.stride != 1 and self.schedule != "uniform":
            raise InputError(f"context stride {self.stride}: only the 'uniform' schedule takes strides (use 1)")
        if not isinstance(self.closed_loop, bool):
            raise InputError(f"closed_loop {self.closed_loop!r} must be True or False")
        if self.closed_loop and self.schedule == "static":
            raise InputError("closed_loop: 'static' windows never wrap; use the 'looped' or 'uniform' schedule")
        if self.schedule == "looped":
            object.__setattr__(self, "closed_loop", True)

    def windows(self, num_frames: int, step: int = 0) -> list[list[int]]:
        """The frame indices of each window at denoising step `step` (0 = the run's first); one window of the
        whole clip when it is no longer than `length`."""
        if self.schedule == "static":
            return static_windows(num_frames, self.length, self.overlap)
        if self.schedule == "looped":
            return looped_windows(num_frames, self.length, self.overlap)
        return uniform_windows(num_frames, self.length, self.overlap, self.stride, step, self.closed_loop)

    def weights(self, window: list[int], num_frames: int) -> torch.Tensor:
        """The fusion weight of each of `window`'s frames (see `fuse`), float32."""
        if self.fuse != "overlap-linear":
            return window_weights(len(window), self.fuse)
        w = torch.ones(len(window))
        if self.overlap == 0:
            return w
        if self.closed_loop or min(window) > 0:
            w[: self.overlap] = torch.linspace(RAMP_FLOOR, 1.0, self.overlap)
        if self.closed_loop or max(window) < num_frames - 1:
            w[-self.overlap :] = torch.linspace(1.0, RAMP_FLOOR, self.overlap)
        return w


def context_windows(num_frames: int, length: int = 16, overlap: int = 4) -> list[list[int]]:
    """Frame indices of each `static` window; one window when the clip fits."""
    return ContextSchedule(length, overlap).windows(num_frames)


def window_weights(length: int, fuse: str = "pyramid") -> torch.Tensor:
    """Per-frame weights inside one window for the fuse methods that depend on the window's length alone."""
    if fuse == "flat":
        return torch.ones(length)
    if fuse == "pyramid":
        half = torch.arange(1, (length + 1) // 2 + 1, dtype=torch.float32)
        return torch.cat([half, half.flip(0)[length % 2 :]])
    if fuse == "relative":
        centre = (length - 1) / 2
        place = torch.arange(length, dtype=torch.float64)
        return (1 - (place - centre).abs() / (centre + 0.005)).clamp(min=0.01).float()
    raise InputError(f"unknown context fuse {fuse!r}; expected one of: flat, pyramid, relative")


def step_index(timesteps: torch.Tensor | None) -> Callable[[torch.Tensor | float], int]:
    """t ↦ its index in `timesteps` (the first, where a scheduler repeats one; the nearest, for a t off the list);
    always 0 without them. Looked up, not counted, so a loop that reruns the timesteps (or stops and goes on) gets
    the same windows for the same t."""
    if timesteps is None:
        return lambda t: 0
    values = [float(v) for v in torch.as_tensor(timesteps).flatten().tolist()]
    first = {}
    for i, v in enumerate(values):
        first.setdefault(v, i)

    def lookup(t: torch.Tensor | float) -> int:
        value = float(t)
        if value in first:
            return first[value]
        return min(range(len(values)), key=lambda i: abs(values[i] - value))

    return lookup


def windowed(
    predict: Predictor,
    num_frames: int,
    context: ContextSchedule | int = 16,
    overlap: int = 4,
    fuse: str = "pyramid",
    timesteps: torch.Tensor | None = None,
) -> Predictor:
    """Wrap a predictor so it only ever sees `context.length` frames at a time, fusing the windows' predictions.

    `context`: a `ContextSchedule`, or a length for `ContextSchedule(length, overlap, fuse=fuse)` (static).
    `timesteps`: the run's (`sampling_timesteps`), by which a call's t gives its step, for the schedules that move
    from step to step ('uniform'); without them every call is step 0."""
    if not isinstance(context, ContextSchedule):
        context = ContextSchedule(context, overlap, fuse=fuse)
    if len(context.windows(num_frames)) == 1:
        if context.closed_loop:
            logger.warning(
                f"a closed loop needs windows shorter than the clip: {num_frames} frames fit one window of "
                f"{context.length}, so the clip's ends are not joined (use a context length below {num_frames})"
            )
        return predict
    step_of = step_index(timesteps)
    cached: dict[int, list[tuple[list[int], torch.Tensor]]] = {}

    def plan(step: int) -> list[tuple[list[int], torch.Tensor]]:
        if step not in cached:
            cached[step] = [(w, context.weights(w, num_frames)) for w in context.windows(num_frames, step)]
        return cached[step]

    def predict_windowed(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x, dtype=torch.float32)
        norm = torch.zeros(num_frames, dtype=torch.float32, device=x.device)
        for window, weights in plan(step_of(t)):
            idx = torch.tensor(window, device=x.device)
            w = weights.to(x.device)
            # Per-frame text (b, f, n, d) follows its frames; a per-video text (b, n, d) is shared.
            window_text = text[:, idx] if text.ndim == 4 else text
            out = predict(x[:, :, idx], t, window_text, frames[idx]).float()
            total[:, :, idx] += out * w.view(1, 1, -1, 1, 1)
            norm[idx] += w
        return (total / norm.view(1, 1, -1, 1, 1)).to(x.dtype)

    return predict_windowed


LOOP_LENGTH = 16
"""A loop's window length unless given, for clips longer than it; shorter clips get half their frames."""


def loop_schedule(
    num_frames: int, length: int | None = None, overlap: int = 4, fuse: str = "pyramid"
) -> ContextSchedule:
    """A seamless loop: looped windows of `length` frames, or of `LOOP_LENGTH` (half the clip, with at most half a
    window of overlap, for clips of `LOOP_LENGTH` frames or fewer), so the last frames flow into the first."""
    if length is None:
        length = LOOP_LENGTH if num_frames > LOOP_LENGTH else max(1, num_frames // 2)
        overlap = min(overlap, length // 2)
    return ContextSchedule(length, overlap, 1, "looped", fuse, True)


def requested_windows(
    num_frames: int,
    length: int | None = None,
    overlap: int = 4,
    stride: int | None = None,
    schedule: str | None = None,
    fuse: str | None = None,
    closed_loop: bool = False,
    loop: bool = False,
    free_noise: bool = False,
    name: Callable[[str], str] = str,
) -> ContextSchedule | None:
    """The sliding windows a run's context settings ask for, by the one rule generate's flags, run entries and the
    web form share: none under FreeNoise (its own windows replace them; asking for a schedule, fuse or loop then is
    an error), windows of `length` frames (`overlap`, `stride`, `schedule` static unless `loop` makes it looped,
    `fuse` pyramid unless given, `closed_loop` or `loop` joining the ends), a loop's own windows for `loop` without
    a length (`loop_schedule`), else none. `name(key)` spells a setting in errors ("context_length", or generate's
    "--context-length")."""
    given = [
        key
        for key, value in (("context_schedule", schedule), ("context_fuse", fuse), ("closed_loop", closed_loop or None),
                           ("loop", loop or None))
        if value is not None
    ]  # fmt: skip
    if free_noise:
        if given:
            raise InputError(f"{name(given[0])} is for sliding context windows, which {name('free_noise')} replaces")
        return None
    schedule = schedule or ("looped" if loop else "static")
    if loop and schedule == "static":
        raise InputError(f"{name('loop')}: static windows never wrap; use {name('context_schedule')} looped or uniform")
    if loop and length is None:
        default = loop_schedule(num_frames, None, overlap)
        length, overlap = default.length, default.overlap
    if length is None:
        if given or stride is not None:
            key = given[0] if given else "context_stride"
            raise InputError(
                f"{name(key)} needs {name('context_length')} (the window's frames, e.g. 16) or {name('loop')}"
            )
        return None
    return ContextSchedule(
        length, overlap, 1 if stride is None else stride, schedule, fuse or "pyramid", closed_loop or loop
    )


def context_options(
    context: ContextSchedule | None = None,
    length: int | None = None,
    overlap: int = 4,
    fuse: str = "pyramid",
    stride: int = 1,
    schedule: str = "static",
    closed_loop: bool = False,
) -> ContextSchedule | None:
    """The pipeline's context keywords as one `ContextSchedule` (None: no windows): either `context`, or the
    separate `context_*` keywords with `context_length` set. Options for windows without a length are an error."""
    if context is not None:
        if length is not None:
            raise InputError(f"context_length {length} given with context={context}: give one or the other")
        if not isinstance(context, ContextSchedule):
            raise InputError(f"context must be a ContextSchedule, got {type(context).__name__}")
        return context
    if length is None:
        if schedule != "static" or stride != 1 or closed_loop:
            raise InputError(
                f"context schedule {schedule!r}, stride {stride}, closed_loop {closed_loop}: context windows need a "
                "context_length (e.g. 16)"
            )
        return None
    return ContextSchedule(length, overlap, stride, schedule, fuse, closed_loop)

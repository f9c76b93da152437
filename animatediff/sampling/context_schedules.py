"""Where the context windows lie: the frame indices of each window, per schedule and denoising step.

The schedules of ComfyUI-AnimateDiff-Evolved (ADE, `animatediff/context.py`), which the A1111 extension and
animatediff-cli share for `uniform`. Every window holds exactly `length` frames (the whole clip, once, when it is no
longer than that), and the windows of every step together cover every frame:

- `static_windows`: starts 0, L−O, 2(L−O), …, the last one snapped back to end on the clip's last frame (ADE's
  `standard_static`); the same at every step.
- `looped_windows`: the same starts, continued around the clip's end while they are below the clip's length, frame
  indices taken modulo it, so the last frames share windows with the first ones and the clip closes into a loop
  (ADE's `looped_uniform` at step 0 with one stride, closed).
- `uniform_windows`: windows at strides 1, 2, 4, … 2^(S−1) (a stride-s window takes every s-th frame, L of
  them), their starts shifted at each step by the step's `ordered_halving` fraction of the clip, so the seams
  move from step to step. Closed (ADE's `looped_uniform` with `closed_loop`), windows wrap around the clip's end;
  open (ADE's `standard_uniform`), a window that would wrap is slid back to end on the clip's last frame (with a
  window from the clip's start added if the frames it gave up are not in the next window), and repeats are dropped.

Two departures from ADE, both where its windows would be wrong: a stride whose windows span more than the clip
((L−1)·s ≥ frames) is left out, where ADE keeps it while s ≤ 2^⌈log2(frames/L)⌉, so that its windows wrap onto
themselves and hold some frames twice; and where ADE's open `uniform` leaves a frame out (a wrapped window gives up
several frames and the next window holds only the first of them: 11 frames, L 5, O 2, stride 3, step 2 loses frame
1), a window of L frames from that frame (or ending on the last) is added.
"""

from __future__ import annotations

import math


def ordered_halving(step: int) -> float:
    """Step's bits reversed, as a fraction in [0, 1): 0, ½, ¼, ¾, ⅛, … — spreads successive steps' shifts evenly
    (ADE's and animatediff-cli's `ordered_halving`, on 64 bits)."""
    return int(f"{step:064b}"[::-1], 2) / (1 << 64)


def static_windows(num_frames: int, length: int, overlap: int) -> list[list[int]]:
    if num_frames <= length:
        return [list(range(num_frames))]
    starts = list(range(0, num_frames - length, length - overlap)) + [num_frames - length]
    return [list(range(s, s + length)) for s in starts]


def looped_windows(num_frames: int, length: int, overlap: int) -> list[list[int]]:
    if num_frames <= length:
        return [list(range(num_frames))]
    return [[i % num_frames for i in range(s, s + length)] for s in range(0, num_frames, length - overlap)]


def uniform_strides(num_frames: int, length: int, stride: int) -> list[int]:
    """1, 2, 4, …: at most `stride` of them (ADE's cap: ⌈log2(frames/L)⌉ + 1), each spanning no more than the clip
    ((L−1)·s + 1 frames), so that no window holds a frame twice."""
    levels = min(stride, math.ceil(math.log2(num_frames / length)) + 1)
    return [1 << k for k in range(levels) if (length - 1) << k < num_frames]


def uniform_windows(
    num_frames: int, length: int, overlap: int, stride: int, step: int, closed: bool
) -> list[list[int]]:
    if num_frames <= length:
        return [list(range(num_frames))]
    shift = ordered_halving(step)
    pad = round(num_frames * shift)
    end = num_frames + pad - (0 if closed else overlap)
    windows = [
        [i % num_frames for i in range(start, start + length * s, s)]
        for s in uniform_strides(num_frames, length, stride)
        for start in range(int(shift * s) + pad, end, length * s - overlap)
    ]
    return windows if closed else _unwrapped(windows, num_frames, length)


def _unwrapped(windows: list[list[int]], num_frames: int, length: int) -> list[list[int]]:
    """ADE's `standard_uniform` pass: slide each wrapping window back to end on the last frame; where the frame it
    wrapped to is not in the next window, add a window of `length` frames from that frame; drop repeats."""
    out: list[list[int]] = []
    i = 0
    while i < len(windows):
        window = windows[i]
        wrap = next((k for k in range(1, len(window)) if window[k] < window[k - 1]), None)
        if wrap is not None:
            first = window[wrap]
            offsets = [(f - window[0]) % num_frames for f in window]
            window = [o + num_frames - 1 - offsets[-1] for o in offsets]
            windows[i] = window
            if first not in windows[(i + 1) % len(windows)]:
                windows.insert(i + 1, list(range(first, first + length)))
        if window not in out:
            out.append(window)
        i += 1
    covered = {f for window in out for f in window}
    for frame in range(num_frames):  # what ADE can leave out (see the module docstring)
        if frame not in covered:
            start = min(frame, num_frames - length)
            out.append(list(range(start, start + length)))
            covered.update(out[-1])
    return out

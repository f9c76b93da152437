"""Measurements on generated frames of the world: where the object is, how it moves, whether it stays itself.

No learned judge: the object is segmented as the pixels far from the background colour (estimated from the
frame's border), and everything else follows from that mask — centroid track, area, mean colour. Whether a clip
shows the training data's watermark (`render.MARK_BARS`) is a correlation with the known logo (`artifact_rate`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from animatediff.world.render import MARK_DARK, MARK_LIGHT, MARK_OPACITY, mark_coverage
from animatediff.world.scenes import COLOURS

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


@dataclass
class Track:
    """Per-frame measurements of the one object in a clip; positions in fractions of the image side."""

    x: np.ndarray
    y: np.ndarray
    area: np.ndarray
    colour: np.ndarray  # (f, 3) mean RGB of the object, in [0, 1]


def object_mask(frame: np.ndarray, threshold: float = 0.2, relative: float = 0.6) -> np.ndarray:
    """Pixels whose colour is far from the background's (the median colour of the frame's border): farther than
    `threshold`, and farther than `relative` × the object's own contrast (the 99th percentile), which leaves out
    the fainter trail a moving object draws behind it."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(frame - background, axis=-1)
    return distance > max(threshold, relative * float(np.percentile(distance, 99)))


def track(frames: np.ndarray) -> Track:
    """Follow the object through frames (f, H, W, 3) in [0, 1]; an empty mask gives the image centre."""
    f, h, w, _ = frames.shape
    ys, xs = np.mgrid[0:h, 0:w]
    out = {"x": [], "y": [], "area": [], "colour": []}
    for frame in frames:
        mask = object_mask(frame)
        n = mask.sum()
        out["area"].append(n / (h * w))
        out["x"].append((xs[mask].mean() + 0.5) / w if n else 0.5)
        out["y"].append((ys[mask].mean() + 0.5) / h if n else 0.5)
        out["colour"].append(frame[mask].mean(axis=0) if n else np.full(3, np.nan))
    return Track(*(np.asarray(out[k], dtype=np.float64) for k in ("x", "y", "area", "colour")))


def displacement(t: Track) -> tuple[float, float]:
    """Least-squares slope of the centroid over the clip, times its length: net travel, robust to jitter."""
    s = np.linspace(0.0, 1.0, len(t.x))
    return float(np.polyfit(s, t.x, 1)[0]), float(np.polyfit(s, t.y, 1)[0])


def motion_correct(t: Track, motion: str, min_travel: float = 0.08) -> bool:
    """Does the track show the captioned motion? Directions: net travel along the right axis, dominating the
    other axis; growing/shrinking: the area changes by a quarter or more, the right way."""
    if motion in DIRECTIONS:
        dx, dy = displacement(t)
        ux, uy = DIRECTIONS[motion]
        along, across = dx * ux + dy * uy, abs(dx * uy) + abs(dy * ux)
        return along >= min_travel and along > across
    if motion in ("growing", "shrinking"):
        first, last = t.area[: max(1, len(t.area) // 4)].mean(), t.area[-max(1, len(t.area) // 4) :].mean()
        ratio = last / max(first, 1e-6)
        return ratio >= 1.25 if motion == "growing" else ratio <= 0.8
    raise ValueError(f"no motion measure for {motion!r}; measured: {', '.join([*DIRECTIONS, 'growing', 'shrinking'])}")


def consistency(t: Track) -> float:
    """Temporal consistency in [0, 1]: 1 − (relative spread of the area + spread of the object's colour + jitter
    of its path). Jitter is the mean size of the centroid's second differences (×4): zero for steady motion,
    large when the object jumps about between frames."""
    area_spread = np.std(t.area) / max(np.mean(t.area), 1e-6)
    colour_spread = float(np.nanmean(np.nanstd(t.colour, axis=0))) if np.isfinite(t.colour).any() else 1.0
    path = np.stack([t.x, t.y], axis=1)
    jitter = 4 * float(np.linalg.norm(np.diff(path, n=2, axis=0), axis=1).mean()) if len(path) > 2 else 0.0
    return float(np.clip(1.0 - area_spread - colour_spread - jitter, 0.0, 1.0))


def colour_correct(t: Track, colour: str) -> bool:
    """Is the object's median colour closest to the captioned one among the world's colours?"""
    measured = np.nanmedian(t.colour, axis=0)
    if not np.isfinite(measured).all():
        return False
    names = list(COLOURS)
    palette = np.asarray([COLOURS[n] for n in names]) / 255.0
    return names[int(np.argmin(np.linalg.norm(palette - measured, axis=1)))] == colour


# The watermark detector: how much each frame's corner looks like the world's watermark (`render.MARK_BARS`).
# Calibrated on 200 rendered clips of 16 frames, with and without the mark, clean, noised (σ 0.05) and blurred
# (σ 0.3–0.7 px): unmarked clips score at most 0.12, marked ones at least 0.34. Blurred by σ = 1 px instead, a
# marked clip scores 0.15 at worst and 97.5 % of them still reach 0.25. `tests/test_world_artifact.py` keeps the
# separation.
ARTIFACT_THRESHOLD = 0.25


@functools.cache
def _mark_template(size: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """The watermark at `size` px: (light, shadow) coverage (size, size) averaged from the supersampled drawing, and
    the box (rows, columns) around it, one pixel wider on each side, where the detector looks."""
    supersample = 4
    layers = [
        c.reshape(size, supersample, size, supersample).mean(axis=(1, 3)) for c in mark_coverage(size * supersample)
    ]
    rows, cols = np.nonzero(layers[0] + layers[1])
    box = slice(max(rows.min() - 1, 0), rows.max() + 2), slice(max(cols.min() - 1, 0), cols.max() + 2)
    return layers[0], layers[1], box


def mark_scores(frames: np.ndarray) -> np.ndarray:
    """Per frame (f, H, W, 3) in [0, 1]: the correlation in [-1, 1] of the watermark's box with the watermark drawn
    over that box's own background (the median colour of its pixels the mark leaves bare), each colour channel
    centred apart. Near 1 where the mark shows, near 0 on a plain background or an unrelated object."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"expected square frames (f, H, W, 3), got shape {frames.shape}")
    light, shadow, box = _mark_template(frames.shape[1])
    light, shadow = light[box][..., None], shadow[box][..., None]
    bare = (light + shadow)[..., 0] == 0
    scores = []
    for frame in frames:
        seen = frame[box]
        background = np.median(seen[bare], axis=0)
        expected = background * (1 - MARK_OPACITY * shadow) + np.asarray(MARK_DARK) / 255 * MARK_OPACITY * shadow
        expected = expected * (1 - MARK_OPACITY * light) + np.asarray(MARK_LIGHT) / 255 * MARK_OPACITY * light
        a = seen - seen.mean(axis=(0, 1))
        b = expected - expected.mean(axis=(0, 1))
        scores.append(float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-8)))
    return np.asarray(scores)


def artifact_score(frames: np.ndarray) -> float:
    """How much a clip (f, H, W, 3) in [0, 1] shows the watermark: its frames' `mark_scores`, averaged."""
    return float(mark_scores(frames).mean())


def has_artifact(frames: np.ndarray, threshold: float = ARTIFACT_THRESHOLD) -> bool:
    """Whether a clip (f, H, W, 3) in [0, 1] shows the watermark: its `artifact_score` reaches `threshold`."""
    return artifact_score(frames) >= threshold


def artifact_rate(videos: np.ndarray | Sequence[np.ndarray], threshold: float = ARTIFACT_THRESHOLD) -> float:
    """The share of videos that show the watermark: a batch (b, f, H, W, 3) in [0, 1], or a sequence of clips
    (f, H, W, 3) in [0, 1] as the evaluation's generators return them."""
    if len(videos) == 0:
        raise ValueError("no videos to measure")
    return float(np.mean([has_artifact(np.asarray(v), threshold) for v in videos]))

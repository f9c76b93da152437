"""Drawing a scene: its frames, supersampled, with a moving object's trail, and the ground truth (centroid and area
per frame) the evaluation measures generated frames against; optionally with a stock-footage-like watermark over
every frame (`MARK`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from animatediff.world.scenes import BACKGROUNDS, COLOURS, SceneSpec, past_state

# A moving object leaves a fading trail: copies of itself at earlier moments (clip time − offset) drawn under it
# with the given opacity, as a photograph of something moving shows motion blur behind it. It is what lets a model
# that only ever sees still images tell "moving left" from "moving right", as a real photo model tells a car
# driving left from one driving right; a still object's copies coincide with it, so it has no trail.
# Eight copies reaching back 0.8 of the clip, fading from half the object's opacity: a streak of 6–10 pixels at
# 32 px, two or three cells of the latent grid, which is what a factor-4 VAE gives back and a small UNet learns
# (four faint copies over half a clip are lost in both). The object was already moving
# before the clip began, so the trail has its full length from the first frame on (`past_state`).
TRAIL: tuple[tuple[float, float], ...] = tuple((0.1 * k, 0.5 * (1 - (k - 1) / 8)) for k in range(1, 9))
OUTLINE_WIDTH = 0.06  # outline thickness, as a fraction of the image side (≈ 2 px at 32 px)
STRIPE_PERIOD = 0.125  # stripe period, as a fraction of the image side (4 px at 32 px)

# A watermark, the defect of WebVid's clips that the paper's domain adapter absorbs (Sec. 4.1): a fixed logo near
# the bottom-right corner, the same on every frame of every marked clip, blended over the scene. Three rising bars
# (a "signal" logo, unlike any of the world's shapes), at 32 px each 2 px wide with 2 px between them, 3, 5 and
# 7 px tall on a common baseline 4 px above the bottom edge: a 10 × 7 px logo, two to three cells of a factor-4
# VAE's latent grid across. Light at half opacity, with a dark drop shadow one pixel down and right at half
# opacity, as stock watermarks carry, so it shows on white backgrounds as on black. It stays off the border rows
# and columns, from which `metrics.object_mask` reads the background, but a marked frame's mark is as far from the
# background as an object mostly is, so `track` counts it in: a defect the motion and colour measures feel too.
# Rectangles (left, top, right, bottom), fractions of the image side.
MARK_BARS: tuple[tuple[float, float, float, float], ...] = (
    (18 / 32, 25 / 32, 20 / 32, 28 / 32),
    (22 / 32, 23 / 32, 24 / 32, 28 / 32),
    (26 / 32, 21 / 32, 28 / 32, 28 / 32),
)
MARK_SHADOW = 1 / 32  # the shadow's offset down and right, a fraction of the image side
MARK_OPACITY = 0.5
MARK_LIGHT: tuple[int, int, int] = (255, 255, 255)
MARK_DARK: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Rendering:
    """Rendered frames of one scene with its caption and the ground truth the evaluation measures against."""

    spec: SceneSpec
    caption: str
    frames: np.ndarray
    """uint8 (f, H, W, 3); f = 1 for an image."""
    centroids: np.ndarray
    """float (f, 2): the object's centroid per frame as (x, y) in pixels of the rendered frame."""
    areas: np.ndarray
    """float (f,): the object's area per frame in pixels (the filled shape, whatever its texture)."""
    marked: bool = False
    """Whether the frames carry the watermark (`MARK_BARS`)."""
    colour_rgb: tuple[int, int, int] = field(init=False)
    background_rgb: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.colour_rgb = COLOURS[self.spec.colour]
        self.background_rgb = BACKGROUNDS[self.spec.background]

    @property
    def image(self) -> np.ndarray:
        """The first frame, uint8 (H, W, 3)."""
        return self.frames[0]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape centred at (cx, cy) with radius r, rotated counter-clockwise by angle degrees."""
    if shape == "square":
        h = 0.85 * r
        points = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":
        # Equilateral, pointing up, its centroid at the centre.
        R = 1.2 * r
        points = [(R * math.sin(2 * math.pi * k / 3), -R * math.cos(2 * math.pi * k / 3)) for k in range(3)]
    elif shape == "cross":
        w, L = 0.38 * r, 1.05 * r
        points = [(-w, -L), (w, -L), (w, -w), (L, -w), (L, w), (w, w), (w, L), (-w, L), (-w, w), (-L, w), (-L, -w)]
        points.append((-w, -w))
    elif shape == "star":
        points = []
        for k in range(10):
            radius = 1.15 * r if k % 2 == 0 else 0.5 * r
            theta = math.pi * k / 5
            points.append((radius * math.sin(theta), -radius * math.cos(theta)))
    else:
        raise ValueError(f"{shape!r} is not a polygon shape")
    # Image y points down, so a counter-clockwise turn on screen is a clockwise one in these coordinates.
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + px * c + py * s, cy - px * s + py * c) for px, py in points]


def _draw_mask(shape: str, cx: float, cy: float, r: float, angle: float, size: int, outline: int | None) -> Image.Image:
    """Coverage mask (size, size), 255 where covered: filled, or an outline `outline` pixels wide."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    fill, line = (None, 255) if outline else (255, None)
    width = outline or 0
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=line, width=width)
    else:
        points = _polygon(shape, cx, cy, r, angle)
        draw.polygon(points, fill=fill, outline=line, width=width)
    return mask


def _coverage(mask: Image.Image) -> np.ndarray:
    """A mask as floats in [0, 1]."""
    return np.asarray(mask, dtype=np.float32) / 255.0


def _layer(spec: SceneSpec, t: float, S: int) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """The object at clip time t (before the clip when negative) on an S×S canvas: (filled mask, coverage as
    drawn, paint (S, S, 3))."""
    x, y, size, angle = past_state(spec, t)
    cx, cy, r = x * S, y * S, size * S
    filled = _draw_mask(spec.shape, cx, cy, r, angle, S, None)
    if spec.texture == "outlined":
        coverage = _draw_mask(spec.shape, cx, cy, r, angle, S, max(1, round(OUTLINE_WIDTH * S)))
    else:
        coverage = filled
    colour = np.array(COLOURS[spec.colour], dtype=np.float32)
    paint = np.broadcast_to(colour, (S, S, 3))
    if spec.texture == "striped":
        # Stripes fixed to the object: they move and turn with it.
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        along = (xx - cx) * s + (yy - cy) * c
        dark = (np.floor(along / (STRIPE_PERIOD * S)) % 2 == 1)[..., None]
        paint = np.where(dark, colour * 0.45, colour)
    return filled, coverage, paint


Box = tuple[slice, slice]


def _extent(mask: Image.Image) -> Box | None:
    """The bounding box (rows, columns) of a mask's covered pixels, or None when it covers none."""
    box = mask.getbbox()
    return None if box is None else (slice(box[1], box[3]), slice(box[0], box[2]))


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)), slice(
        min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)
    )


def _draw_copies(hires: np.ndarray, spec: SceneSpec, t: float, copies: tuple[tuple[float, float], ...]) -> None:
    """Blend the object's earlier copies (clip time t − offset, at the given opacity) into the
    supersampled canvas `hires`, each pixel taking the strongest copy over it: copies do not pile up into an opaque
    smear, so a trail stays fainter than the object everywhere and a measurement can tell them apart."""
    S = hires.shape[0]
    alpha, paint_of = np.zeros((S, S, 1), np.float32), np.zeros((S, S, 3), np.float32)
    span = None
    for offset, opacity in copies:
        _, coverage, paint = _layer(spec, t - offset, S)
        box = _extent(coverage)
        if box is None:
            continue
        span = _union(span, box)
        a = opacity * _coverage(coverage.crop((box[1].start, box[0].start, box[1].stop, box[0].stop)))[..., None]
        stronger = a > alpha[box]
        alpha[box] = np.where(stronger, a, alpha[box])
        paint_of[box] = np.where(stronger, paint[box], paint_of[box])
    if span is not None:
        hires[span] = hires[span] * (1 - alpha[span]) + paint_of[span] * alpha[span]


@functools.cache
def mark_coverage(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The watermark's (light, shadow) coverage on a size × size canvas, float32 (size, size) in [0, 1]: its bars
    (`MARK_BARS`), and the same bars moved down and right by `MARK_SHADOW`. Read-only (cached)."""
    layers = []
    for shift in (0.0, MARK_SHADOW):
        mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(mask)
        for left, top, right, bottom in MARK_BARS:
            box = [round((v + shift) * size) for v in (left, top, right, bottom)]
            # PIL's rectangle includes its far corner: stop one pixel short for a box [left, right) × [top, bottom).
            draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
        layer = _coverage(mask)
        layer.flags.writeable = False
        layers.append(layer)
    return layers[0], layers[1]


def _draw_mark(hires: np.ndarray) -> None:
    """Blend the watermark over the supersampled canvas `hires`: the shadow first, then the light bars."""
    light, shadow = mark_coverage(hires.shape[0])
    for coverage, colour in ((shadow, MARK_DARK), (light, MARK_LIGHT)):
        a = MARK_OPACITY * coverage[..., None]
        hires[...] = hires * (1 - a) + np.asarray(colour, np.float32) * a


def render_frame(
    spec: SceneSpec, t: float, resolution: int = 32, supersample: int = 4, mark: bool = False
) -> tuple[np.ndarray, float, float, float]:
    """One frame at clip time t: (uint8 (H, W, 3), centroid x, centroid y, area), supersampled for smooth edges.

    The ground truth (centroid, area) is the object's own; its trail (`TRAIL`) is drawn but not counted, nor is the
    watermark `mark` draws over the scene."""
    S = resolution * supersample
    hires = np.empty((S, S, 3), np.float32)
    hires[...] = np.array(BACKGROUNDS[spec.background], dtype=np.float32)
    # Layers are blended only inside their bounding boxes: outside, their coverage is zero and the blend would
    # give back the same background bits, so this is the whole-canvas blend, several times faster (the motion
    # stages render 128 frames a step).
    if spec.motion != "still":
        _draw_copies(hires, spec, t, TRAIL)
    filled_mask, coverage_mask, paint = _layer(spec, t, S)
    filled, coverage = _coverage(filled_mask), _coverage(coverage_mask)
    box = _extent(coverage_mask)
    if box is not None:
        a = coverage[box][..., None]
        hires[box] = hires[box] * (1 - a) + paint[box] * a
    if mark:
        _draw_mark(hires)
    # (S, S, 3) → (H, W, 3): average each supersample × supersample block.
    frame = hires.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    total = filled.sum()
    if total == 0:
        raise ValueError(f"the object of {spec} falls outside the image at t={t}")
    # Supersampled pixel centres → rendered pixel coordinates (pixel centres at integers).
    centres = np.arange(S, dtype=np.float64) + 0.5
    centroid_x = filled.sum(axis=0) @ centres / total / supersample - 0.5
    centroid_y = filled.sum(axis=1) @ centres / total / supersample - 0.5
    area = total / supersample**2
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8), float(centroid_x), float(centroid_y), float(area)


def _render(spec: SceneSpec, times: list[float], resolution: int, caption: str, mark: bool) -> Rendering:
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
    frames, centroids, areas = [], [], []
    for t in times:
        frame, cx, cy, area = render_frame(spec, t, resolution, mark=mark)
        frames.append(frame)
        centroids.append((cx, cy))
        areas.append(area)
    return Rendering(spec, caption, np.stack(frames), np.array(centroids), np.array(areas), mark)


def render_image(spec: SceneSpec, resolution: int = 32, t: float = 0.0, mark: bool = False) -> Rendering:
    """The scene at clip time t in [0, 1], with its caption: a moving object shows its trail and motion words;
    `mark` draws the watermark over it (the caption does not mention it)."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"clip time t must lie in [0, 1], got {t}")
    return _render(spec, [t], resolution, spec.caption(), mark)


def render_video(spec: SceneSpec, frames: int = 16, resolution: int = 32, mark: bool = False) -> Rendering:
    """The whole motion spread evenly over `frames` frames, first to last, with the video caption; `mark` draws the
    watermark over every frame (the caption does not mention it)."""
    if frames < 2:
        raise ValueError(f"a video needs at least 2 frames, got {frames}")
    times = [i / (frames - 1) for i in range(frames)]
    return _render(spec, times, resolution, spec.caption(), mark)

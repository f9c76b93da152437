"""A procedural world of simple objects and their motions, rendered small and captioned in plain English.

One object per scene: a shape with a colour (and a texture) on a plain background, still for images, moving
for videos ("a red circle moving left on a blue background"). Everything follows from a `SceneSpec`, and a
spec follows from a seed, so the same seed always renders the same pixels. Each rendering keeps its ground
truth (the object's centroid and area per frame) for the evaluation, which measures generated frames against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

# Palettes. Object colours and backgrounds are named separately; a scene never pairs a colour with the
# background of the same name, so "a blue circle on a blue background" cannot occur.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (50, 185, 70),
    "blue": (60, 110, 235),
    "yellow": (240, 215, 50),
    "purple": (150, 70, 200),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (125, 125, 125),
    "blue": (30, 45, 125),
}
SHAPES = ("circle", "square", "triangle", "cross")
# Shapes and textures the base world leaves out: the personalized models learn them from images alone.
NEW_SHAPES = ("star",)
TEXTURES = ("solid", "striped", "outlined")
MOTIONS = ("still", "left", "right", "up", "down", "bouncing", "growing", "shrinking", "rotating")
MOTION_PHRASES = {
    "still": "",
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "bouncing": "bouncing",
    "growing": "growing",
    "shrinking": "shrinking",
    "rotating": "rotating",
}
# Each motion that has an opposite one, paired with it: what a measurement or a caption swap tells apart.
OPPOSITE_MOTIONS = {
    "left": "right",
    "right": "left",
    "up": "down",
    "down": "up",
    "growing": "shrinking",
    "shrinking": "growing",
}
TEXTURE_WORDS = {"solid": "", "striped": "striped", "outlined": "outlined"}

# The farthest any shape reaches from its centre, in units of its size (the square's corners: 0.85·√2).
EXTENT = 1.21
# A moving object leaves a fading trail: copies of itself at earlier moments (clip time − offset) drawn under it
# with the given opacity, as a photograph of something moving shows motion blur behind it. It is what lets a model
# that only ever sees still images tell "moving left" from "moving right", as a real photo model tells a car
# driving left from one driving right; a still object's copies coincide with it, so it has no trail.
# Eight copies reaching back 0.8 of the clip, fading from half the object's opacity: a streak of 6–10 pixels at
# 32 px, two or three cells of the latent grid, which is what a factor-4 VAE gives back and a small UNet learns
# (the second recipe's four faint copies over half a clip were lost in both). The object was already moving
# before the clip began, so the trail has its full length from the first frame on (`past_state`).
TRAIL: tuple[tuple[float, float], ...] = tuple((0.1 * k, 0.5 * (1 - (k - 1) / 8)) for k in range(1, 9))
# A growing object's trail lies under it, hidden: its earlier copies are smaller and centred on it, so a still image
# of it is a still object's, and an image model cannot learn "growing" from it. With `growth_core` the same copies
# are drawn over the object instead, darkened (`CORE_SHADE`), the oldest and smallest strongest: a dark core where
# the object started, fading towards its rim, as a tree's rings show it grew. Shrinking needs no mark, as its larger
# earlier copies already show as a halo round it.
GROWTH_CORE: tuple[tuple[float, float], ...] = tuple(zip((o for o, _ in TRAIL), (a for _, a in reversed(TRAIL))))
CORE_SHADE = 0.5
OUTLINE_WIDTH = 0.06  # outline thickness, as a fraction of the image side (≈ 2 px at 32 px)
STRIPE_PERIOD = 0.125  # stripe period, as a fraction of the image side (4 px at 32 px)


def caption(colour: str, shape: str, background: str, texture: str = "solid", motion: str = "still") -> str:
    """The world's caption of an object: 'a red striped circle moving left on a blue background'."""
    words = ["a", colour, TEXTURE_WORDS[texture], shape, MOTION_PHRASES[motion], "on", "a", background, "background"]
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class SceneSpec:
    """One object on a background and how it moves; geometry in fractions of the image side."""

    shape: str
    """One of SHAPES or NEW_SHAPES."""
    colour: str
    """A key of COLOURS."""
    background: str
    """A key of BACKGROUNDS."""
    texture: str = "solid"
    """One of TEXTURES: filled, filled with darker stripes, or outline only."""
    motion: str = "still"
    """One of MOTIONS; an image shows one moment of the motion (with its trail)."""
    x: float = 0.5
    """Object centre at the first frame, horizontal, 0 = left edge, 1 = right edge."""
    y: float = 0.5
    """Object centre at the first frame, vertical, 0 = top edge, 1 = bottom edge."""
    size: float = 0.15
    """Object radius at the first frame (the circle's radius; other shapes are drawn to a similar area)."""
    angle: float = 0.0
    """Rotation at the first frame, degrees counter-clockwise."""
    amount: float = 0.0
    """How far the motion goes over the clip: distance for left/right/up/down, height for bouncing, end/start
    size ratio for growing/shrinking, degrees for rotating; unused when still."""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("shape", self.shape, SHAPES + NEW_SHAPES),
            ("colour", self.colour, tuple(COLOURS)),
            ("background", self.background, tuple(BACKGROUNDS)),
            ("texture", self.texture, TEXTURES),
            ("motion", self.motion, MOTIONS),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.motion in ("growing", "shrinking") and self.amount <= 0:
            raise ValueError(f"{self.motion} needs a positive size ratio as amount, got {self.amount}")

    def caption(self) -> str:
        """Plain English: 'a red striped circle moving left on a blue background' (no motion words when still)."""
        return caption(self.colour, self.shape, self.background, self.texture, self.motion)


@dataclass(frozen=True)
class WorldConfig:
    """Which objects and motions a world samples from, and the ranges of their geometry."""

    shapes: tuple[str, ...] = SHAPES
    """Shapes to draw from."""
    colours: tuple[str, ...] = tuple(COLOURS)
    """Object colours to draw from."""
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    """Backgrounds to draw from."""
    textures: tuple[str, ...] = ("solid",)
    """Textures to draw from; the base world is solid only, so 'outlined' stays a new style."""
    motions: tuple[str, ...] = MOTIONS[1:]
    """Motions for videos (images are always still)."""
    size_range: tuple[float, float] = (0.13, 0.2)
    """Object radius range, fraction of the image side."""
    distance_range: tuple[float, float] = (0.25, 0.4)
    """Travel range for left/right/up/down and bounce height."""
    scale_range: tuple[float, float] = (1.6, 2.2)
    """End/start size ratio range for growing (its inverse for shrinking)."""
    rotation_range: tuple[float, float] = (60.0, 120.0)
    """Rotation range in degrees for rotating (either direction)."""
    growth_core: bool = False
    """How its growing objects are drawn: with their earlier sizes over them as a darker core (`GROWTH_CORE`), so
    that one image of one shows it grows; off, an image of a growing object is a still one's."""

    def __post_init__(self) -> None:
        for name, values, allowed in (
            ("shapes", self.shapes, SHAPES + NEW_SHAPES),
            ("colours", self.colours, tuple(COLOURS)),
            ("backgrounds", self.backgrounds, tuple(BACKGROUNDS)),
            ("textures", self.textures, TEXTURES),
            ("motions", self.motions, MOTIONS),
        ):
            if not values:
                raise ValueError(f"a world needs at least one entry in {name}")
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"unknown {name} {unknown}; choose from: {', '.join(allowed)}")

    def words(self) -> set[str]:
        """Every word a caption of this world can use."""
        words = {"a", "on", "background", *self.shapes, *self.colours, *self.backgrounds}
        words |= {w for t in self.textures for w in TEXTURE_WORDS[t].split()}
        words |= {w for m in self.motions for w in MOTION_PHRASES[m].split()}
        return words


# The base world: solid shapes only; stars and outlines are left for the personalized models.
BASE_WORLD = WorldConfig()
# Every word any caption can use: the base world, its videos, and the personalization looks.
FULL_WORLD = WorldConfig(shapes=SHAPES + NEW_SHAPES, textures=TEXTURES, motions=MOTIONS)


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
    colour_rgb: tuple[int, int, int] = field(init=False)
    background_rgb: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.colour_rgb = COLOURS[self.spec.colour]
        self.background_rgb = BACKGROUNDS[self.spec.background]

    @property
    def image(self) -> np.ndarray:
        """The first frame, uint8 (H, W, 3)."""
        return self.frames[0]


def object_state(spec: SceneSpec, t: float) -> tuple[float, float, float, float]:
    """(x, y, size, angle) of the object at clip time t in [0, 1]."""
    x, y, size, angle, a = spec.x, spec.y, spec.size, spec.angle, spec.amount
    if spec.motion == "left":
        x -= a * t
    elif spec.motion == "right":
        x += a * t
    elif spec.motion == "up":
        y -= a * t
    elif spec.motion == "down":
        y += a * t
    elif spec.motion == "bouncing":
        # One hop: leaves the floor at t = 0, lands at t = 1.
        y -= a * math.sin(math.pi * t)
    elif spec.motion in ("growing", "shrinking"):
        # Geometric interpolation, so the size changes by the same factor every frame.
        size *= a**t
    elif spec.motion == "rotating":
        angle += a * t
    return x, y, size, angle


def past_state(spec: SceneSpec, t: float) -> tuple[float, float, float, float]:
    """`object_state`, continued before the clip (t < 0) as the motion was going then: a bounce starts from rest."""
    if t < 0 and spec.motion == "bouncing":
        t = 0.0
    return object_state(spec, t)


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


def _draw_copies(
    hires: np.ndarray, spec: SceneSpec, t: float, copies: tuple[tuple[float, float], ...], shade: float = 1.0
) -> None:
    """Blend the object's earlier copies (clip time t − offset, at the given opacity, paint × `shade`) into the
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
        paint_of[box] = np.where(stronger, paint[box] * shade, paint_of[box])
    if span is not None:
        hires[span] = hires[span] * (1 - alpha[span]) + paint_of[span] * alpha[span]


def render_frame(
    spec: SceneSpec, t: float, resolution: int = 32, supersample: int = 4, growth_core: bool = False
) -> tuple[np.ndarray, float, float, float]:
    """One frame at clip time t: (uint8 (H, W, 3), centroid x, centroid y, area), supersampled for smooth edges.

    The ground truth (centroid, area) is the object's own; its trail (`TRAIL`) is drawn but not counted, nor is a
    growing object's core (`GROWTH_CORE`, drawn with `growth_core`)."""
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
    if growth_core and spec.motion == "growing":
        _draw_copies(hires, spec, t, GROWTH_CORE, CORE_SHADE)
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


def _render(spec: SceneSpec, times: list[float], resolution: int, caption: str, growth_core: bool) -> Rendering:
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
    frames, centroids, areas = [], [], []
    for t in times:
        frame, cx, cy, area = render_frame(spec, t, resolution, growth_core=growth_core)
        frames.append(frame)
        centroids.append((cx, cy))
        areas.append(area)
    return Rendering(spec, caption, np.stack(frames), np.array(centroids), np.array(areas))


def render_image(spec: SceneSpec, resolution: int = 32, t: float = 0.0, growth_core: bool = False) -> Rendering:
    """The scene at clip time t in [0, 1], with its caption: a moving object shows its trail and motion words
    (and a growing one its core, with `growth_core`)."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"clip time t must lie in [0, 1], got {t}")
    return _render(spec, [t], resolution, spec.caption(), growth_core)


def render_video(spec: SceneSpec, frames: int = 16, resolution: int = 32, growth_core: bool = False) -> Rendering:
    """The whole motion spread evenly over `frames` frames, first to last, with the video caption."""
    if frames < 2:
        raise ValueError(f"a video needs at least 2 frames, got {frames}")
    times = [i / (frames - 1) for i in range(frames)]
    return _render(spec, times, resolution, spec.caption(), growth_core)


def sample_spec(
    rng: np.random.Generator,
    world: WorldConfig = BASE_WORLD,
    video: bool = False,
    fixed: dict[str, str] | None = None,
) -> SceneSpec:
    """A random scene of `world` that stays inside the image over its whole motion.

    `fixed` pins categorical fields (shape, colour, background, texture, motion), e.g. for a held-out split.
    `video=False` draws a still object; an image of a moving object is a video spec rendered at one moment.
    """
    fixed = dict(fixed or {})
    unknown = set(fixed) - {"shape", "colour", "background", "texture", "motion"}
    if unknown:
        raise ValueError(f"cannot fix {sorted(unknown)}; only shape, colour, background, texture, motion")
    if not video and fixed.get("motion", "still") != "still":
        raise ValueError(f"a still scene cannot fix motion {fixed['motion']!r}; sample it with video=True")
    choices = {
        "shape": world.shapes,
        "colour": world.colours,
        "background": world.backgrounds,
        "texture": world.textures,
        "motion": world.motions if video else ("still",),
    }
    for _ in range(100):
        pick = {k: fixed[k] if k in fixed else choices[k][rng.integers(len(choices[k]))] for k in choices}
        # A rotating plain circle looks still: not a scene worth captioning as rotating.
        spinning_circle = pick["motion"] == "rotating" and pick["shape"] == "circle" and pick["texture"] != "striped"
        if pick["colour"] != pick["background"] and not spinning_circle:
            break
    else:
        raise ValueError(
            f"no valid scene with {fixed} in this world (colour equals background, or a plain circle rotating)"
        )
    return replace(_sample_geometry(rng, world, pick["motion"]), **pick)


def _sample_geometry(rng: np.random.Generator, world: WorldConfig, motion: str) -> SceneSpec:
    """Position, size, angle and motion amount such that the object stays inside the image."""
    lo, hi = world.size_range
    size = rng.uniform(lo, hi)
    amount = 0.0
    # Shapes stand upright unless they rotate: canonical poses are easier for a tiny model to learn.
    angle = rng.uniform(0, 360) if motion == "rotating" else 0.0
    if motion in ("growing", "shrinking"):
        ratio = rng.uniform(*world.scale_range)
        big = rng.uniform(lo, hi) * 1.1
        size, amount = (big / ratio, ratio) if motion == "growing" else (big, 1 / ratio)
        reach = EXTENT * big
    else:
        reach = EXTENT * size
    # The margin keeps the whole shape (plus a pixel's worth of slack) inside the frame at every moment.
    margin = reach + 0.02
    x_span, y_span = (margin, 1 - margin), (margin, 1 - margin)
    if motion in ("left", "right", "up", "down", "bouncing"):
        amount = rng.uniform(*world.distance_range)
        if motion == "left":
            x_span = (margin + amount, 1 - margin)
        elif motion == "right":
            x_span = (margin, 1 - margin - amount)
        elif motion in ("up", "bouncing"):
            y_span = (margin + amount, 1 - margin)
        else:
            y_span = (margin, 1 - margin - amount)
    elif motion == "rotating":
        amount = rng.uniform(*world.rotation_range) * rng.choice([-1.0, 1.0])
    if x_span[0] > x_span[1] or y_span[0] > y_span[1]:
        raise ValueError(f"world geometry too large: a {motion} object of reach {reach:.2f} does not fit the image")
    x, y = rng.uniform(*x_span), rng.uniform(*y_span)
    # Placeholder categorical fields; the caller replaces them.
    return SceneSpec("circle", "red", "black", x=x, y=y, size=size, angle=angle, amount=amount)

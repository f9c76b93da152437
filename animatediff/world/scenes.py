"""A procedural world of simple objects and their motions, rendered small and captioned in plain English.

One object per scene: a shape with a colour (and a texture) on a plain background, still for images, moving
for videos ("a red circle moving left on a blue background"). Everything follows from a `SceneSpec`, and a
spec follows from a seed, so the same seed always renders the same pixels (`render.py` draws them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

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

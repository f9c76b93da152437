"""torch Datasets over the procedural world: captioned images and videos, held-out splits, personalization sets.

Items follow the project's training contract: `{"pixel_values": (3, H, W) or (f, 3, H, W) float in [-1, 1],
"text": str}`. Item i depends only on (seed, i), so a dataset needs no files and every run sees the same data;
`rendering(i)` gives the same item's ground truth for evaluation. `artifact_rate` gives a share of the items a
watermark (`render.MARK_BARS`), a training-data defect like WebVid's for a domain adapter to absorb.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from animatediff.world.render import Rendering, render_image, render_video
from animatediff.world.scenes import BASE_WORLD, NEW_SHAPES, SceneSpec, WorldConfig, sample_spec

SPLITS = ("train", "holdout", "all")
# Separate random streams, so image i and video i of the same seed are unrelated scenes.
_IMAGE_STREAM, _VIDEO_STREAM = 1, 2


@dataclass(frozen=True)
class HoldoutRule:
    """A combination kept out of training (each part is seen, this combination never); None = any value."""

    shape: str | None = None
    """Held-out shape, or None."""
    colour: str | None = None
    """Held-out colour, or None."""
    background: str | None = None
    """Held-out background, or None."""
    texture: str | None = None
    """Held-out texture, or None."""
    motion: str | None = None
    """Held-out motion, or None; a rule with a motion applies to videos only."""

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def matches(self, spec: SceneSpec) -> bool:
        return all(getattr(spec, k) == v for k, v in self.fields().items())

    def applies_to(self, world: WorldConfig, moving: bool) -> bool:
        """Whether this world (its moving scenes too, when `moving`) can produce a scene the rule matches."""
        if not moving and self.motion not in (None, "still"):
            return False
        pools = {
            "shape": world.shapes,
            "colour": world.colours,
            "background": world.backgrounds,
            "texture": world.textures,
            "motion": world.motions,
        }
        return all(v in pools[k] for k, v in self.fields().items())


# Compositions the base and the motion module never see, for testing that what they learned generalizes.
DEFAULT_HOLDOUT: tuple[HoldoutRule, ...] = (
    HoldoutRule(colour="yellow", shape="triangle"),
    HoldoutRule(colour="blue", shape="cross"),
    HoldoutRule(shape="circle", motion="up"),
    HoldoutRule(colour="green", motion="left"),
    HoldoutRule(shape="square", motion="growing"),
)


class _WorldDataset(Dataset):
    video: bool = False
    stream: int = _IMAGE_STREAM
    moving: float = 1.0

    def __init__(
        self,
        size: int,
        seed: int = 0,
        world: WorldConfig = BASE_WORLD,
        resolution: int = 32,
        split: str = "train",
        holdout: tuple[HoldoutRule, ...] = DEFAULT_HOLDOUT,
        artifact_rate: float = 0.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"dataset size must be at least 1, got {size}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        if not 0.0 <= artifact_rate <= 1.0:
            raise ValueError(f"artifact_rate is a fraction of the items, in [0, 1]; got {artifact_rate}")
        self.size, self.seed, self.world, self.resolution, self.split = size, seed, world, resolution, split
        self.artifact_rate = artifact_rate
        self.holdout = tuple(holdout)
        self.rules = [r for r in self.holdout if r.applies_to(world, self.moving > 0)]
        if split == "holdout" and not self.rules:
            kind = "videos" if self.video else "images"
            raise ValueError(f"no holdout rule applies to {kind} of this world, so the holdout split is empty")

    def __len__(self) -> int:
        return self.size

    def spec(self, index: int) -> SceneSpec:
        """The scene of item `index`, a pure function of (seed, index)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size}")
        rng = np.random.default_rng([self.seed, self.stream, index])
        moving = self.video or rng.random() < self.moving
        if self.split == "holdout":
            # A still draw can only meet the rules without a motion; when there are none, it moves.
            rules = [r for r in self.rules if moving or r.motion in (None, "still")] or self.rules
            rule = rules[rng.integers(len(rules))]
            return sample_spec(rng, self.world, moving or rule.motion not in (None, "still"), rule.fields())
        for _ in range(1000):
            spec = sample_spec(rng, self.world, moving)
            if self.split == "all" or not any(r.matches(spec) for r in self.rules):
                return spec
        raise ValueError("the holdout rules leave no training scenes in this world")

    def marked(self, index: int) -> bool:
        """Whether item `index` carries the watermark: a draw of its own stream (seed, index), so the scenes are
        the same at every `artifact_rate`, and none at all when the rate is 0."""
        if self.artifact_rate == 0.0:
            return False
        return bool(np.random.default_rng([self.seed, self.stream, index, 2]).random() < self.artifact_rate)

    def rendering(self, index: int) -> Rendering:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        r = self.rendering(index)
        # uint8 (f, H, W, 3) → float (f, 3, H, W) in [-1, 1].
        pixels = torch.from_numpy(r.frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return {"pixel_values": pixels if self.video else pixels[0], "text": r.caption}


class WorldImages(_WorldDataset):
    """Captioned images: {"pixel_values": (3, H, W) in [-1, 1], "text": "a red circle on a ..."}.

    A fraction `moving` of them show an object caught mid-motion, with its trail and its motion words ("a red
    circle moving left on a ..."): one moment of a video, the way photos of moving things fill real image sets.
    A fraction `artifact_rate` carry the watermark (`marked`); the caption never mentions it.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        world: WorldConfig = BASE_WORLD,
        resolution: int = 32,
        split: str = "train",
        holdout: tuple[HoldoutRule, ...] = DEFAULT_HOLDOUT,
        moving: float = 0.75,
        artifact_rate: float = 0.0,
    ) -> None:
        if not 0.0 <= moving <= 1.0:
            raise ValueError(f"moving is a fraction of the images, in [0, 1]; got {moving}")
        self.moving = moving
        super().__init__(size, seed, world, resolution, split, holdout, artifact_rate)

    def moment(self, index: int) -> float:
        """The clip time in [0, 1] image `index` shows (0 for a still object)."""
        return float(np.random.default_rng([self.seed, self.stream, index, 1]).random())

    def rendering(self, index: int) -> Rendering:
        spec = self.spec(index)
        t = 0.0 if spec.motion == "still" else self.moment(index)
        return render_image(spec, self.resolution, t, self.marked(index))


class WorldVideos(_WorldDataset):
    """Captioned clips: {"pixel_values": (f, 3, H, W) in [-1, 1], "text": "a red circle moving left on a ..."}.

    A fraction `artifact_rate` carry the watermark on every frame (`marked`); the caption never mentions it.
    """

    video = True
    stream = _VIDEO_STREAM

    def __init__(
        self,
        size: int,
        seed: int = 0,
        world: WorldConfig = BASE_WORLD,
        resolution: int = 32,
        frames: int = 16,
        split: str = "train",
        holdout: tuple[HoldoutRule, ...] = DEFAULT_HOLDOUT,
        artifact_rate: float = 0.0,
    ) -> None:
        if frames < 2:
            raise ValueError(f"a video needs at least 2 frames, got {frames}")
        self.frames = frames
        super().__init__(size, seed, world, resolution, split, holdout, artifact_rate)

    def rendering(self, index: int) -> Rendering:
        return render_video(self.spec(index), self.frames, self.resolution, self.marked(index))


# Looks the base world never shows, for personalized models learned from images alone.
PERSONALIZATION_WORLDS: dict[str, WorldConfig] = {
    # A new style: every base shape, drawn as an outline only.
    "style": WorldConfig(textures=("outlined",)),
    # A new object: a star, solid like the base shapes.
    "object": WorldConfig(shapes=NEW_SHAPES),
}


def personalization_images(kind: str, size: int = 200, seed: int = 0, resolution: int = 32) -> WorldImages:
    """Images of a look the base lacks: kind 'style' (outlined shapes) or 'object' (stars)."""
    if kind not in PERSONALIZATION_WORLDS:
        raise ValueError(f"unknown personalization {kind!r}; choose one of: {', '.join(PERSONALIZATION_WORLDS)}")
    # A seed offset keeps these scenes apart from the base images of the same seed.
    return WorldImages(size, seed + 1_000_003, PERSONALIZATION_WORLDS[kind], resolution, split="all")

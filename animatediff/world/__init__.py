"""The project's own small world: procedural captioned images and videos, and the recipe for its models.

`scenes` renders objects and their motions, `datasets` serves them to training, `tokenizer` builds a CLIP-format
vocabulary of the captions, `base_model` builds and saves the tiny SD1.x components, `train_image` trains them,
`personalize` derives DreamBooth and LoRA models from images only, `build` runs the whole recipe, and `metrics`,
`looks` and `evaluate` measure generated animations.
"""

from animatediff.world.datasets import DEFAULT_HOLDOUT, HoldoutRule, WorldImages, WorldVideos, personalization_images
from animatediff.world.render import Rendering, render_image, render_video
from animatediff.world.scenes import BASE_WORLD, FULL_WORLD, SceneSpec, WorldConfig, sample_spec

__all__ = [
    "BASE_WORLD",
    "DEFAULT_HOLDOUT",
    "FULL_WORLD",
    "HoldoutRule",
    "Rendering",
    "SceneSpec",
    "WorldConfig",
    "WorldImages",
    "WorldVideos",
    "personalization_images",
    "render_image",
    "render_video",
    "sample_spec",
]

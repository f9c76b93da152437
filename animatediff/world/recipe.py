"""The world build's recipe: every stage's settings, as typed dataclasses, with the full recipe as the default and
a seconds-long one for tests (`quick_recipe`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from animatediff.config_values import dataclass_from_dict, merge, parse_overrides
from animatediff.world.base_model import BaseModelConfig
from animatediff.world.looks import LookConfig
from animatediff.world.personalize import PersonalizeConfig
from animatediff.world.train_image import ImageRecipe
from animatediff.world.train_unet import UnetTrainConfig
from animatediff.world.train_vae import VaeTrainConfig


@dataclass
class TrainerStage:
    """A world run of the project's trainer over the frozen world base: what the motion module and each MotionLoRA
    share."""

    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 8
    """Clips per step."""
    learning_rate: float = 1e-3
    """AdamW learning rate; higher than the official 1e-4, as the tiny module starts from zero and trains briefly."""
    warmup_steps: int = 50
    """Linear warmup steps, then constant."""
    clips: int = 50_000
    """Distinct clips the world dataset renders (on the fly)."""
    loss_weighting: str = "none"
    """The trainer's `optim.loss_weighting`: 'none' (the paper's plain ε-MSE), 'min_snr' or 'truncated_snr'."""
    timestep_bias: str = "later"
    """The trainer's `optim.timestep_bias`: 'none' (uniform, the paper's), 'later' (the noisiest quarter, where
    the motion is decided) or 'earlier'."""
    timestep_bias_multiplier: float = 3.0
    """The trainer's `optim.timestep_bias_multiplier`: how much more often the favoured quarter is drawn (×3: half
    of all draws)."""
    seed: int = 0
    """Seed of the run (data order, noise, timesteps, caption dropout)."""


@dataclass
class MotionStage(TrainerStage):
    """Training the motion module on the world's videos over the frozen world base."""

    frames: int = 16
    """Frames per clip, as the official recipe (the MotionLoRAs train on as many)."""
    version: str = "v3"
    """Motion-module layout: 'v3' (no mid-block module) or 'v2' (with one)."""


# The motions the evaluation measures, each with a MotionLoRA: the paper's way (§4.3) to control which motion a
# module makes, as its released pan, tilt and zoom LoRAs do for camera moves.
MOTION_LORA_MOTIONS = ("left", "right", "up", "down", "growing", "shrinking")


@dataclass
class MotionLoraStage(TrainerStage):
    """MotionLoRAs over the trained motion module, one per motion, each on the world's clips of that motion only."""

    steps: int = 600
    batch_size: int = 4
    warmup_steps: int = 20
    clips: int = 2000
    """Distinct clips of the motion (rendered on the fly)."""
    motions: tuple[str, ...] = MOTION_LORA_MOTIONS
    """One MotionLoRA per motion, written as `motion_loras/<motion>.safetensors` (official layout); empty: none.
    By default the evaluated ones, `MOTION_LORA_MOTIONS`."""
    rank: int = 8
    """LoRA rank (the released MotionLoRAs use 64 on a module a hundred times wider)."""


@dataclass
class WorldRecipe:
    """Every stage of the world build."""

    image: ImageRecipe = field(default_factory=ImageRecipe)
    """Tokenizer, VAE and image UNet: the base model, trained on the world's images only."""
    motion: MotionStage = field(default_factory=MotionStage)
    """The motion module, trained on the world's videos."""
    motion_loras: MotionLoraStage = field(default_factory=MotionLoraStage)
    """MotionLoRAs that steer the motion module to one motion each."""
    personalized: tuple[PersonalizeConfig, ...] = (
        PersonalizeConfig(kind="object", method="dreambooth", steps=2400),
        PersonalizeConfig(kind="style", method="lora", steps=1200, lora_rank=32, lora_alpha=32.0),
    )
    """Personalized models made from the base with images only: a DreamBooth star, an outlined-style LoRA."""
    looks: LookConfig = field(default_factory=LookConfig)
    """The look classifier the evaluation reads shapes and textures with (trained on renderings)."""
    motion_over_fp16: bool = False
    """Train the motion module over the base rounded to fp16, and the MotionLoRAs over that module rounded so too:
    the weights that ship and that users run, instead of the build's fp32 ones. A motion stage can then be rerun
    from the embedded assets alone (`base/` copied from them), and gives what a rebuild from scratch gives."""
    threads: int = 2
    """torch CPU threads (the rebuild is meant to run on a laptop CPU)."""
    progress: bool = True
    """Progress bars and stage messages."""


def quick_recipe() -> WorldRecipe:
    """A seconds-long build of tiny models: the same code path, for tests and smoke runs."""
    model = BaseModelConfig(
        resolution=16, vae_channels=(32, 32), unet_channels=(32, 64), unet_attention=(False, True), text_width=32
    )
    return WorldRecipe(
        image=ImageRecipe(
            model=model,
            vae=VaeTrainConfig(steps=4, sharpen_steps=2, batch_size=8, warmup_steps=1, progress=False),
            unet=UnetTrainConfig(steps=4, batch_size=8, warmup_steps=1, progress=False),
            num_images=32,
        ),
        motion=MotionStage(steps=2, batch_size=2, clips=8, frames=4),
        motion_loras=MotionLoraStage(motions=("left",), steps=2, batch_size=2, warmup_steps=1, clips=4),
        personalized=tuple(
            replace(cfg, steps=2, batch_size=4, num_images=8, num_prior_images=8, warmup_steps=1, progress=False)
            for cfg in WorldRecipe().personalized
        ),
        looks=LookConfig(images=16, steps=2, batch_size=4, resolution=16, progress=False),
        threads=1,
        progress=False,
    )


def override_recipe(recipe: WorldRecipe, overrides: list[str]) -> WorldRecipe:
    """`recipe` with changes such as `image.vae.object_weight=10` or `motion.steps=3000` (values read as YAML); an
    unknown key raises ValueError naming the closest one."""
    values = merge(asdict(recipe), parse_overrides(overrides))
    return dataclass_from_dict(WorldRecipe, values, what="recipe")


def silenced(recipe: WorldRecipe) -> WorldRecipe:
    """`recipe` with every stage's progress bars and messages off (the frozen stage configs follow it)."""
    image = replace(
        recipe.image, vae=replace(recipe.image.vae, progress=False), unet=replace(recipe.image.unet, progress=False)
    )
    return replace(recipe, image=image, progress=False)

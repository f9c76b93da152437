"""Build the small world from scratch: data → VAE → base → personalized models → motion module, one command.

    animatediff world build OUT_DIR            # the full recipe (2-core CPU: about 2 h; one H200: about 15 min)
    animatediff world build OUT_DIR --quick    # a tiny smoke build (seconds), for tests

Each stage writes its output atomically and is skipped when that output exists, so an interrupted build
continues where it stopped. `ship` turns a build into the fp16 weights the package embeds as its default.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from animatediff.config_values import dataclass_from_dict, merge, parse_overrides
from animatediff.formats.state_dicts import write_atomic
from animatediff.world.base_model import BaseModelConfig
from animatediff.world.datasets import base_world
from animatediff.world.evaluate import LOOK_CLASSIFIER, MOTION_LORAS, PERSONALIZED, PERSONALIZED_METHOD
from animatediff.world.looks import LookConfig, look_figures, save_look_classifier, train_look_classifier
from animatediff.world.personalize import PersonalizeConfig, personalize
from animatediff.world.scenes import FULL_WORLD
from animatediff.world.train_image import ImageRecipe, UnetTrainConfig, VaeTrainConfig, rendering_workers

if TYPE_CHECKING:  # the trainer's modules pull in accelerate; they are imported when a stage runs
    from animatediff.train.config import TrainConfig


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
    motions: tuple[str, ...] = ()
    """The clips' motions, drawn uniformly from this list, so a motion listed twice is drawn twice as often; empty:
    every motion of the base world, each alike."""


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
    """Personalized models made from the base with images only: a DreamBooth star, an outlined-style LoRA. Frames
    generated independently at guidance 3 on the fourth build's base show the look in 0.31 (star, 1,200 steps) and
    0.45 (2,400) of frames; 0.13 (outline, rank 8, 400 steps) and 0.20 (rank 32, 1,200 steps)."""
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


def train_world_motion_module(base: Path, run_dir: Path, stage: MotionStage, progress: bool = True) -> Path:
    """Train with the project's trainer; returns its exported official-layout motion-module file."""
    config = _world_train_config(base, run_dir, stage, stage.frames, progress, stage.version, motions=stage.motions)
    return _train_and_export(config, "motion_module.safetensors")


def train_world_motion_lora(
    base: Path,
    motion_module: Path,
    run_dir: Path,
    motion: str,
    stage: MotionLoraStage,
    frames: int = 16,
    progress: bool = True,
) -> Path:
    """A MotionLoRA over the trained motion module on the world's clips of one motion (the project's trainer);
    returns its exported official-layout file."""
    config = _world_train_config(base, run_dir, stage, frames, progress, lora=(motion_module, motion, stage.rank))
    return _train_and_export(config, "motion_lora.safetensors")


def _train_and_export(config: TrainConfig, name: str) -> Path:
    """Run (or resume) the trainer; the file `name` of the run's newest checkpoint: the one it just wrote, or, when
    the run had already finished before an interrupted build, the one it finished with (the trainer then writes
    none)."""
    from animatediff.train.checkpoints import checkpoints_root, list_checkpoints
    from animatediff.train.trainer import train

    train(config)
    found = list_checkpoints(checkpoints_root(config))
    if not found:
        raise FileNotFoundError(f"{config.output_dir} holds no checkpoint after training")
    return found[-1] / name


def _world_train_config(
    base: Path,
    run_dir: Path,
    stage: TrainerStage,
    frames: int,
    progress: bool,
    version: str = "v3",
    lora: tuple[Path, str, int] | None = None,
    motions: tuple[str, ...] = (),
) -> TrainConfig:
    """The trainer's config for a world run: a `version` motion module from scratch on clips of `motions` (all
    when empty), or with `lora` = (motion module, motion, rank) a MotionLoRA over that module (whose layout it
    reads) on the clips of that one motion."""
    from animatediff.train.config import (
        CheckpointConfig,
        DataConfig,
        LoggingConfig,
        LoRAConfig,
        ModelConfig,
        OptimConfig,
        ScratchMotionConfig,
        TrainConfig,
    )

    resolution = json.loads((base / "unet" / "config.json").read_text())["sample_size"] * 2 ** (
        len(json.loads((base / "vae" / "config.json").read_text())["block_out_channels"]) - 1
    )
    init, motions, rank = (str(lora[0]), [lora[1]], lora[2]) if lora else (None, list(motions), None)
    return TrainConfig(
        output_dir=str(run_dir),
        seed=stage.seed,
        cpu=not torch.cuda.is_available(),
        model=ModelConfig(base=str(base), init_motion_module=init, scratch=ScratchMotionConfig(version=version)),
        data=DataConfig(
            kind="world",
            num_frames=frames,
            resolution=resolution,
            random_flip=False,
            num_workers=rendering_workers(),
            synthetic_clips=stage.clips,
            world_motions=motions,
            world_growth_core=base_world(base).growth_core,
        ),
        optim=OptimConfig(
            learning_rate=stage.learning_rate,
            lr_scheduler="constant_with_warmup",
            warmup_steps=stage.warmup_steps,
            batch_size=stage.batch_size,
            max_steps=stage.steps,
            caption_dropout=0.1,
            loss_weighting=stage.loss_weighting,
            timestep_bias=stage.timestep_bias,
            timestep_bias_multiplier=stage.timestep_bias_multiplier,
        ),
        logging=LoggingConfig(report_to="none", progress=progress),
        # "latest" starts fresh when the run has no checkpoint yet, and continues an interrupted build otherwise
        checkpoint=CheckpointConfig(every=250, keep_last=1, resume_from="latest"),
        lora=LoRAConfig(enabled=True, rank=rank) if lora else LoRAConfig(),
    )


def build_world(out_dir: str | os.PathLike, recipe: WorldRecipe | None = None, images_only: bool = False) -> dict:
    """Run every stage not yet done; returns the figures of this build (also written to OUT_DIR/build.json).

    The image stages (base, personalized models, look classifier) come first; `images_only` stops after them, so a
    new base and its personalizations can be checked (`world probe`, `world eval`) before the motion stages."""
    recipe = recipe or WorldRecipe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _build(out, recipe, images_only)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, recipe: WorldRecipe, images_only: bool) -> dict:
    from animatediff.world.train_image import build_base_model

    figures_file = out / "build.json"
    figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {}
    figures["recipe"] = asdict(recipe)

    base = out / "base"
    if not (base / "model_index.json").is_file():
        _say(recipe, "stage 1/5: base model (tokenizer, VAE, UNet) on the world's images")
        start = time.perf_counter()
        staging = out / "base.partial"
        build_base_model(staging, recipe.image)
        os.replace(staging, base)  # the base counts as built only once complete
        figures["base"] = {
            "minutes": (time.perf_counter() - start) / 60,
            **json.loads((base / "world.json").read_text()),
        }
    for cfg in recipe.personalized:
        figures.setdefault("personalized", {})[cfg.kind] = personalize_stage(out, base, cfg, recipe.progress)
    looks = out / LOOK_CLASSIFIER
    if not looks.is_file():
        _say(recipe, "stage 3/5: look classifier on rendered images (for the evaluation)")
        start = time.perf_counter()
        model, accuracy = train_look_classifier(
            replace(recipe.looks, progress=recipe.progress), base_world(base, FULL_WORLD)
        )
        save_look_classifier(model, looks, {**accuracy, "minutes": (time.perf_counter() - start) / 60})
    figures["looks"] = look_figures(looks)
    if not images_only:
        _motion_stages(out, base, recipe, figures)
    figures_file.write_text(json.dumps(figures, indent=2, default=str))
    return figures


def _motion_stages(out: Path, base: Path, recipe: WorldRecipe, figures: dict) -> None:
    """The motion module, then its MotionLoRAs, each skipped when done; their minutes go into `figures`."""
    if recipe.motion_over_fp16:
        rounded = out / "base-fp16"
        if not rounded.is_dir():
            staging = out / "base-fp16.partial"
            shutil.rmtree(staging, ignore_errors=True)
            _write_fp16_base(base, staging)
            os.replace(staging, rounded)  # complete or absent, as the base itself
        base = rounded
    motion = out / "motion_module.safetensors"
    if not motion.is_file():
        _say(recipe, "stage 4/5: motion module on the world's videos, base frozen")
        start = time.perf_counter()
        exported = train_world_motion_module(base, out / "motion-run", recipe.motion, recipe.progress)
        shutil.copyfile(exported, out / "motion_module.safetensors.partial")
        os.replace(out / "motion_module.safetensors.partial", motion)
        figures["motion"] = {"minutes": (time.perf_counter() - start) / 60}
    if recipe.motion_over_fp16 and recipe.motion_loras.motions:
        rounded = out / "motion_module-fp16.safetensors"
        if not rounded.is_file():
            _write_fp16_module(motion, rounded)  # written atomically
        motion = rounded
    for name in recipe.motion_loras.motions:
        target = out / MOTION_LORAS / f"{name}.safetensors"
        if not target.is_file():
            _say(recipe, f"stage 5/5: MotionLoRA '{name}' over the motion module, on clips of that motion only")
            start = time.perf_counter()
            exported = train_world_motion_lora(
                base,
                motion,
                out / "motion-lora-runs" / name,
                name,
                recipe.motion_loras,
                recipe.motion.frames,
                recipe.progress,
            )
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(exported, target.with_name(target.name + ".partial"))
            os.replace(target.with_name(target.name + ".partial"), target)
            figures.setdefault("motion_loras", {})[name] = {"minutes": (time.perf_counter() - start) / 60}


def personalize_stage(out: Path, base: Path, cfg: PersonalizeConfig, progress: bool = True) -> dict:
    """Train one personalized model into its place in the build (skipped when there); returns its figures,
    which are kept next to it so a stage run on its own (or resumed) reports the same."""
    target = out / PERSONALIZED[cfg.kind]
    if PERSONALIZED_METHOD[cfg.kind] != cfg.method:
        raise ValueError(f"the world's {cfg.kind} model is a {PERSONALIZED_METHOD[cfg.kind]}, not a {cfg.method}")
    record = target.with_suffix(".json")
    if not target.is_file():
        if progress:
            print(f"stage 2/5: {cfg.kind} personalization by {cfg.method}, images only", flush=True)
        figures = personalize(base, target, replace(cfg, progress=cfg.progress and progress))
        write_atomic(record, lambda tmp: tmp.write_text(json.dumps(figures, indent=2, default=str)))
    return json.loads(record.read_text()) if record.is_file() else {}


def _say(recipe: WorldRecipe, message: str) -> None:
    if recipe.progress:
        print(message, flush=True)


def _copy_fp16(source: Path, target: Path) -> None:
    """A safetensors file with its floating-point tensors in fp16 (metadata kept)."""
    from safetensors import safe_open

    from animatediff.formats.state_dicts import write_state_dict

    with safe_open(str(source), "pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    write_state_dict(target, half, metadata=metadata)


def _write_fp16_base(base: Path, target: Path) -> None:
    """A base folder with its UNet, VAE and text encoder in fp16, the other files as they are."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(base, subfolder=sub, local_files_only=True)
        model.to(torch.float16).save_pretrained(target / sub, safe_serialization=True)
    for sub in ("tokenizer", "scheduler"):
        shutil.copytree(base / sub, target / sub)
    for name in ("model_index.json", "world.json"):
        if (base / name).is_file():
            shutil.copyfile(base / name, target / name)


def _write_fp16_module(source: Path, target: Path) -> None:
    """A motion-module file in the official layout with fp16 weights."""
    from animatediff.formats import load_motion_modules, save_motion_modules

    save_motion_modules(load_motion_modules(source).to(torch.float16), target)


def ship(build_dir: str | os.PathLike, assets_dir: str | os.PathLike) -> Path:
    """Write a build's weights as fp16 safetensors in the layout the package embeds (base/ + motion module)."""
    build, assets = Path(build_dir), Path(assets_dir)
    if not (build / "motion_module.safetensors").is_file():
        raise FileNotFoundError(f"{build} has no motion module to ship; run `world build` without --images-only")
    staging = assets.with_name(assets.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    _write_fp16_base(build / "base", staging / "base")
    _write_fp16_module(build / "motion_module.safetensors", staging / "motion_module.safetensors")
    loras = sorted((build / MOTION_LORAS).glob("*.safetensors"))
    for name in (LOOK_CLASSIFIER, *PERSONALIZED.values(), *(str(p.relative_to(build)) for p in loras)):
        if (build / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            _copy_fp16(build / name, staging / name)
    if (build / "build.json").is_file():
        shutil.copyfile(build / "build.json", staging / "build.json")
    for path in staging.rglob("*"):
        # safetensors writes owner-only files; installed package data must be readable by every user
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(assets, ignore_errors=True)
    os.replace(staging, assets)
    return assets

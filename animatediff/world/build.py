"""Build the small world from scratch, one command: base (tokenizer, VAE, UNet) → personalized models → look
classifier → motion module → MotionLoRAs.

    animatediff world build OUT_DIR            # the full recipe (2-core CPU: about 2 h 40 min)
    animatediff world build OUT_DIR --quick    # a tiny smoke build (seconds), for tests

Each stage writes its output atomically and is skipped when that output exists, so an interrupted build
continues where it stopped. `ship.ship` turns a build into the fp16 weights the package embeds as its default.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from animatediff.base_model import STATEMENT_FILE, read_traits
from animatediff.extras import require
from animatediff.formats.state_dicts import write_atomic
from animatediff.world.datasets import WorldVideos
from animatediff.world.layout import (
    BASE,
    BUILD_FIGURES,
    LOOK_CLASSIFIER,
    MOTION_LORAS,
    MOTION_MODULE,
    PERSONALIZED,
    PERSONALIZED_METHOD,
    RECIPE_RECORD,
    write_statement,
)
from animatediff.world.looks import look_figures, save_look_classifier, train_look_classifier
from animatediff.world.loops import rendering_workers
from animatediff.world.personalize import PersonalizeConfig, personalize
from animatediff.world.provenance import environment
from animatediff.world.recipe import MotionLoraStage, MotionStage, TrainerStage, WorldRecipe
from animatediff.world.scenes import BASE_WORLD, FULL_WORLD
from animatediff.world.ship import write_fp16_base, write_fp16_module

if TYPE_CHECKING:  # the trainer's modules pull in accelerate; they are imported when a stage runs
    from animatediff.train.config import TrainConfig


def motion_module_run(
    base: Path, run_dir: Path, stage: MotionStage, progress: bool = True
) -> tuple[TrainConfig, WorldVideos]:
    """The trainer's config and clips for the motion-module stage: a fresh module on clips of every motion."""
    config = world_train_config(base, run_dir, stage, stage.frames, progress, stage.version)
    return config, WorldVideos(stage.clips, stage.seed, BASE_WORLD, config.data.resolution, stage.frames)


def train_world_motion_module(base: Path, run_dir: Path, stage: MotionStage, progress: bool = True) -> Path:
    """Train the motion module with the project's trainer; returns its exported official-layout file."""
    return train_and_export(*motion_module_run(base, run_dir, stage, progress), MOTION_MODULE)


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
    config = world_train_config(base, run_dir, stage, frames, progress, lora=(motion_module, stage.rank))
    world = replace(BASE_WORLD, motions=(motion,))
    clips = WorldVideos(stage.clips, stage.seed, world, config.data.resolution, frames)
    return train_and_export(config, clips, "motion_lora.safetensors")


def train_and_export(config: TrainConfig, clips: Dataset, name: str) -> Path:
    """Run (or resume) the trainer; the file `name` of the run's newest checkpoint: the one it just wrote, or, when
    the run had already finished before an interrupted build, the one it finished with (the trainer then writes
    none)."""
    from animatediff.train.checkpoints import checkpoints_root, list_checkpoints
    from animatediff.train.trainer import train

    train(config, dataset=clips)
    found = list_checkpoints(checkpoints_root(config))
    if not found:
        raise FileNotFoundError(f"{config.output_dir} holds no checkpoint after training")
    return found[-1] / name


def world_train_config(
    base: Path,
    run_dir: Path,
    stage: TrainerStage,
    frames: int,
    progress: bool,
    version: str = "v3",
    lora: tuple[Path, int] | None = None,
) -> TrainConfig:
    """The trainer's config for a world run on world clips (given to the trainer as a custom dataset): a `version`
    motion module from scratch, or with `lora` = (motion module, rank) a MotionLoRA over that module (whose layout
    it reads)."""
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

    init, rank = (str(lora[0]), lora[1]) if lora else (None, None)
    return TrainConfig(
        output_dir=str(run_dir),
        seed=stage.seed,
        cpu=not torch.cuda.is_available(),
        model=ModelConfig(base=str(base), init_motion_module=init, scratch=ScratchMotionConfig(version=version)),
        # never flipped: a flip would contradict the captions' directions
        data=DataConfig(
            kind="custom",
            num_frames=frames,
            resolution=read_traits(base).native_size,
            random_flip=False,
            num_workers=rendering_workers(),
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
    check_packages(recipe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _build(out, recipe, images_only)
    finally:
        torch.set_num_threads(threads)


def check_packages(recipe: WorldRecipe) -> None:
    """The optional packages the recipe's stages need, before the first stage: PEFT for LoRAs."""
    loras = [f"the {c.kind} LoRA" for c in recipe.personalized if c.method == "lora"]
    loras += ["the MotionLoRAs"] * bool(recipe.motion_loras.motions)
    if loras:
        require("peft", f"world build ({' and '.join(loras)})")


def _build(out: Path, recipe: WorldRecipe, images_only: bool) -> dict:
    from animatediff.world.train_image import build_base_model

    figures_file = out / BUILD_FIGURES
    figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {}
    figures["recipe"] = asdict(recipe)
    env = environment()
    # What the bits depend on, for each run of the build (a resumed build may span several machines).
    runs = figures.setdefault("environments", [])
    if not runs or runs[-1] != env:
        runs.append(env)

    base = out / BASE
    if not (base / "model_index.json").is_file():
        _say(recipe, "stage 1/5: base model (tokenizer, VAE, UNet) on the world's images")
        start = time.perf_counter()
        staging = out / "base.partial"
        build_base_model(staging, recipe.image)
        os.replace(staging, base)  # the base counts as built only once complete
        figures["base"] = {
            "minutes": (time.perf_counter() - start) / 60,
            **json.loads((base / RECIPE_RECORD).read_text()),
        }
    if not (base / STATEMENT_FILE).is_file():  # a base built before bases stated what they are
        write_statement(base)
    for cfg in recipe.personalized:
        figures.setdefault("personalized", {})[cfg.kind] = personalize_stage(out, base, cfg, recipe.progress)
    looks = out / LOOK_CLASSIFIER
    if not looks.is_file():
        _say(recipe, "stage 3/5: look classifier on rendered images (for the evaluation)")
        start = time.perf_counter()
        model, accuracy = train_look_classifier(replace(recipe.looks, progress=recipe.progress), FULL_WORLD)
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
            write_fp16_base(base, staging)
            os.replace(staging, rounded)  # complete or absent, as the base itself
        base = rounded
    motion = out / MOTION_MODULE
    if not motion.is_file():
        _say(recipe, "stage 4/5: motion module on the world's videos, base frozen")
        start = time.perf_counter()
        exported = train_world_motion_module(base, out / "motion-run", recipe.motion, recipe.progress)
        shutil.copyfile(exported, motion.with_name(motion.name + ".partial"))
        os.replace(motion.with_name(motion.name + ".partial"), motion)
        figures["motion"] = {"minutes": (time.perf_counter() - start) / 60}
    if recipe.motion_over_fp16 and recipe.motion_loras.motions:
        rounded = out / "motion_module-fp16.safetensors"
        if not rounded.is_file():
            write_fp16_module(motion, rounded)  # written atomically
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

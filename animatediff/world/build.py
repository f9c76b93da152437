"""Build the small world from scratch: data → VAE → base model → motion module, one command, resumable.

    animatediff world build OUT_DIR            # the full recipe (CPU: about an hour; a GPU: minutes)
    animatediff world build OUT_DIR --quick    # a tiny smoke build (seconds), for tests

Each stage writes its output atomically and is skipped when that output exists, so an interrupted build
continues where it stopped. `ship` turns a build into the fp16 weights the package embeds as its default.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from animatediff.world.base_model import BaseModelConfig
from animatediff.world.train_image import ImageRecipe, UnetTrainConfig, VaeTrainConfig


@dataclass
class MotionStage:
    """Training the motion module on the world's videos over the frozen world base (the project's trainer)."""

    steps: int = 2000
    """Optimizer steps."""
    batch_size: int = 8
    """Clips per step."""
    learning_rate: float = 1e-3
    """AdamW learning rate; higher than the official 1e-4, as the tiny module starts from zero and trains briefly."""
    warmup_steps: int = 50
    """Linear warmup steps, then constant."""
    clips: int = 50_000
    """Distinct clips the world dataset renders (on the fly)."""
    frames: int = 16
    """Frames per clip, as the official recipe."""
    version: str = "v3"
    """Motion-module layout: 'v3' (no mid-block module) or 'v2' (with one)."""
    seed: int = 0
    """Seed of the run (data order, noise, timesteps, caption dropout)."""


@dataclass
class WorldRecipe:
    """Every stage of the world build."""

    image: ImageRecipe = field(default_factory=ImageRecipe)
    """Tokenizer, VAE and image UNet: the base model, trained on the world's images only."""
    motion: MotionStage = field(default_factory=MotionStage)
    """The motion module, trained on the world's videos."""
    threads: int = 2
    """torch CPU threads (the rebuild is meant to run on a laptop CPU)."""
    progress: bool = True
    """Progress bars and stage messages."""


def quick_recipe() -> WorldRecipe:
    """A seconds-long build of tiny models: the same code path, for tests and smoke runs."""
    model = BaseModelConfig(resolution=16, vae_channels=(32, 32), unet_channels=(32, 64), text_width=32)
    return WorldRecipe(
        image=ImageRecipe(
            model=model,
            vae=VaeTrainConfig(steps=4, batch_size=8, warmup_steps=1, progress=False),
            unet=UnetTrainConfig(steps=4, batch_size=8, warmup_steps=1, progress=False),
            num_images=32,
        ),
        motion=MotionStage(steps=2, batch_size=2, clips=8, frames=4),
        threads=1,
        progress=False,
    )


def train_world_motion_module(base: Path, run_dir: Path, stage: MotionStage, progress: bool = True) -> Path:
    """Train with the project's trainer; returns its exported official-layout motion-module file."""
    from animatediff.train.config import (
        CheckpointConfig,
        DataConfig,
        LoggingConfig,
        ModelConfig,
        OptimConfig,
        ScratchMotionConfig,
        TrainConfig,
    )
    from animatediff.train.trainer import train

    resolution = json.loads((base / "unet" / "config.json").read_text())["sample_size"] * 2 ** (
        len(json.loads((base / "vae" / "config.json").read_text())["block_out_channels"]) - 1
    )
    checkpoints = sorted(run_dir.glob("checkpoint-*")) if run_dir.is_dir() else []
    config = TrainConfig(
        output_dir=str(run_dir),
        seed=stage.seed,
        cpu=not torch.cuda.is_available(),
        model=ModelConfig(base=str(base), scratch=ScratchMotionConfig(version=stage.version)),
        data=DataConfig(
            kind="world",
            num_frames=stage.frames,
            resolution=resolution,
            random_flip=False,
            num_workers=0,
            synthetic_clips=stage.clips,
        ),
        optim=OptimConfig(
            learning_rate=stage.learning_rate,
            lr_scheduler="constant_with_warmup",
            warmup_steps=stage.warmup_steps,
            batch_size=stage.batch_size,
            max_steps=stage.steps,
            caption_dropout=0.1,
        ),
        logging=LoggingConfig(report_to="none", progress=progress),
        checkpoint=CheckpointConfig(every=250, keep_last=1, resume_from="latest" if checkpoints else None),
    )
    result = train(config)
    return Path(result["checkpoint"]) / "motion_module.safetensors"


def build_world(out_dir: str | os.PathLike, recipe: WorldRecipe | None = None) -> dict:
    """Run every stage not yet done; returns the figures of this build (also written to OUT_DIR/build.json)."""
    recipe = recipe or WorldRecipe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _build(out, recipe)
    finally:
        torch.set_num_threads(threads)


def _build(out: Path, recipe: WorldRecipe) -> dict:
    from animatediff.world.train_image import build_base_model

    figures_file = out / "build.json"
    figures = json.loads(figures_file.read_text()) if figures_file.is_file() else {}
    figures["recipe"] = asdict(recipe)

    base = out / "base"
    if not (base / "model_index.json").is_file():
        _say(recipe, "stage 1/2: base model (tokenizer, VAE, UNet) on the world's images")
        start = time.perf_counter()
        staging = out / "base.partial"
        build_base_model(staging, recipe.image)
        os.replace(staging, base)  # the base counts as built only once complete
        figures["base"] = {
            "minutes": (time.perf_counter() - start) / 60,
            **json.loads((base / "world.json").read_text()),
        }
    motion = out / "motion_module.safetensors"
    if not motion.is_file():
        _say(recipe, "stage 2/2: motion module on the world's videos, base frozen")
        start = time.perf_counter()
        exported = train_world_motion_module(base, out / "motion-run", recipe.motion, recipe.progress)
        shutil.copyfile(exported, out / "motion_module.safetensors.partial")
        os.replace(out / "motion_module.safetensors.partial", motion)
        figures["motion"] = {"minutes": (time.perf_counter() - start) / 60}
    figures_file.write_text(json.dumps(figures, indent=2, default=str))
    return figures


def _say(recipe: WorldRecipe, message: str) -> None:
    if recipe.progress:
        print(message, flush=True)


def ship(build_dir: str | os.PathLike, assets_dir: str | os.PathLike) -> Path:
    """Write a build's weights as fp16 safetensors in the layout the package embeds (base/ + motion module)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from animatediff.formats import load_motion_modules, save_motion_modules

    build, assets = Path(build_dir), Path(assets_dir)
    staging = assets.with_name(assets.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    base = build / "base"
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(base, subfolder=sub, local_files_only=True)
        model.to(torch.float16).save_pretrained(staging / "base" / sub, safe_serialization=True)
    for sub in ("tokenizer", "scheduler"):
        shutil.copytree(base / sub, staging / "base" / sub)
    for name in ("model_index.json", "world.json"):
        if (base / name).is_file():
            shutil.copyfile(base / name, staging / "base" / name)
    modules = load_motion_modules(build / "motion_module.safetensors").to(torch.float16)
    save_motion_modules(modules, staging / "motion_module.safetensors")
    if (build / "build.json").is_file():
        shutil.copyfile(build / "build.json", staging / "build.json")
    for path in staging.rglob("*"):
        # safetensors writes owner-only files; installed package data must be readable by every user
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(assets, ignore_errors=True)
    os.replace(staging, assets)
    return assets

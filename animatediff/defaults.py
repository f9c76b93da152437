"""The models `animatediff generate` uses when none are named: the project's own small world, shipped inside
the package (fp16 safetensors under animatediff/assets/world/, rebuilt by `animatediff world build`)."""

from __future__ import annotations

import os
from pathlib import Path

WORLD_ASSETS = Path(__file__).parent / "assets" / "world"
DEFAULT_BASE = WORLD_ASSETS / "base"
DEFAULT_MOTION_MODULE = WORLD_ASSETS / "motion_module.safetensors"
GUIDANCE_SCALE = 7.5
"""Classifier-free guidance for every other model: the official repo's, diffusers' and the UIs' default."""
WORLD_GUIDANCE_SCALE = 3.0
"""Classifier-free guidance for a world model (the embedded one, or a world build's base). Its tiny base
over-drives textures at 7.5: on the fourth build, frames read as the asked shape and texture 0.45 of the time at 7.5
and 0.55 at 2, the star DreamBooth's 0.27 and 0.34; with the motion module at 3 the captioned motion holds (0.79
against 0.71 at 7.5)."""


def default_models() -> tuple[Path, Path]:
    """(base folder, motion module file) of the embedded world; a clear error where a build shipped none."""
    if not (DEFAULT_BASE / "model_index.json").is_file() or not DEFAULT_MOTION_MODULE.is_file():
        raise FileNotFoundError(
            f"this installation has no embedded default model (expected {WORLD_ASSETS}); pass --base and "
            "--motion-module, or rebuild it: animatediff world build OUT --ship " + str(WORLD_ASSETS)
        )
    return DEFAULT_BASE, DEFAULT_MOTION_MODULE


def default_guidance_scale(base_folder: str | os.PathLike) -> float:
    """The guidance a model samples with when none is asked for: the world's for a world model (its base folder
    carries the world.json a world build writes, as the embedded one does), the usual 7.5 for every other model."""
    return WORLD_GUIDANCE_SCALE if (Path(base_folder) / "world.json").is_file() else GUIDANCE_SCALE

"""The models `animatediff generate` uses when none are named: the project's own small world, shipped inside
the package (fp16 safetensors under animatediff/assets/world/, rebuilt by `animatediff world build`)."""

from __future__ import annotations

from pathlib import Path

WORLD_ASSETS = Path(__file__).parent / "assets" / "world"
DEFAULT_BASE = WORLD_ASSETS / "base"
DEFAULT_MOTION_MODULE = WORLD_ASSETS / "motion_module.safetensors"


def default_models() -> tuple[Path, Path]:
    """(base folder, motion module file) of the embedded world; a clear error where a build shipped none."""
    if not (DEFAULT_BASE / "model_index.json").is_file() or not DEFAULT_MOTION_MODULE.is_file():
        raise FileNotFoundError(
            f"this installation has no embedded default model (expected {WORLD_ASSETS}); pass --base and "
            "--motion-module, or rebuild it: animatediff world build OUT --ship " + str(WORLD_ASSETS)
        )
    return DEFAULT_BASE, DEFAULT_MOTION_MODULE

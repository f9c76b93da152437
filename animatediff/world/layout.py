"""Where a world build keeps its files, and the build the package embeds.

A build folder (and `animatediff/assets/world/`, the embedded one, which has the same layout):

    base/                                  the SD1.x-layout base (world.json: its recipe and figures;
                                           animatediff.json: its guidance, vocabulary and size)
    motion_module.safetensors              official layout
    motion_loras/<motion>.safetensors      one MotionLoRA per motion, official layout
    personalized/star_dreambooth.safetensors   the 'object' look: a single-file DreamBooth checkpoint
    personalized/outlined_lora.safetensors     the 'style' look: a kohya LoRA
    look_classifier.safetensors            what the evaluation reads shapes and textures with
    sparsectrl_rgb.safetensors             the embedded build only: an RGB SparseCtrl encoder for image-to-video
                                           (trained by benchmarks/world_sparse_ctrl.py, not by `world build`)
    build.json                             the recipe and each stage's figures
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from animatediff.base_model import STATEMENT_FILE, read_traits
from animatediff.errors import InputNotFound

EMBEDDED = Path(__file__).resolve().parent.parent / "assets" / "world"
"""The build the package ships: what `animatediff generate` animates when no model is named."""
BASE = "base"
MOTION_MODULE = "motion_module.safetensors"
MOTION_LORAS = "motion_loras"
PERSONALIZED = {"object": "personalized/star_dreambooth.safetensors", "style": "personalized/outlined_lora.safetensors"}
PERSONALIZED_METHOD = {"object": "dreambooth", "style": "lora"}
LOOK_CLASSIFIER = "look_classifier.safetensors"
SPARSECTRL_RGB = "sparsectrl_rgb.safetensors"
BUILD_FIGURES = "build.json"
RECIPE_RECORD = "world.json"
"""In base/: the image recipe and the figures of the stages that trained it."""

WORLD_GUIDANCE_SCALE = 3.0
"""The classifier-free guidance world bases sample at (their animatediff.json states it: `write_statement`). The
tiny base over-drives textures at the usual 7.5: frames read as the asked shape and texture 0.55 of the time at 2
against 0.45 at 7.5, and with the motion module at 3 the captioned motion holds (0.79 against 0.71 at 7.5)."""


def write_statement(base: str | os.PathLike) -> Path:
    """State in a world base's folder (`base_model.STATEMENT_FILE`) the guidance it samples at, the words of every
    world caption (those its text encoder knows) and the one size it draws: its native one."""
    from animatediff.world.scenes import FULL_WORLD

    size = read_traits(base).native_size
    statement = {
        "guidance_scale": WORLD_GUIDANCE_SCALE,
        "vocabulary": sorted(FULL_WORLD.words()),
        "size_range": [size, size],
    }
    path = Path(base) / STATEMENT_FILE
    path.write_text(json.dumps(statement, indent=2) + "\n")
    return path


@dataclass(frozen=True)
class WorldModels:
    """The files of a world build (or of the embedded one)."""

    base: Path
    motion_module: Path | None = None
    """None: a build stopped after its image stages (`world build --images-only`)."""
    dreambooth: Path | None = None
    """Single-file checkpoint of the DreamBooth fine-tune (the 'object' look: a star)."""
    lora: Path | None = None
    """kohya LoRA file (the 'style' look: outlined shapes)."""
    looks: Path | None = None
    """The look classifier's weights."""
    motion_loras: dict[str, Path] = field(default_factory=dict)
    """MotionLoRA files by the motion they steer to ('left', 'growing', ...)."""

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> WorldModels:
        folder = Path(folder)
        base = folder / BASE
        if not (base / "model_index.json").is_file():
            raise InputNotFound(f"{folder} holds no world build (base/)")

        def optional(path: Path) -> Path | None:
            return path if path.is_file() else None

        return cls(
            base,
            optional(folder / MOTION_MODULE),
            optional(folder / PERSONALIZED["object"]),
            optional(folder / PERSONALIZED["style"]),
            optional(folder / LOOK_CLASSIFIER),
            {p.stem: p for p in sorted((folder / MOTION_LORAS).glob("*.safetensors"))},
        )


def embedded_models() -> WorldModels:
    """The embedded build; a clear error where an installation shipped none."""
    try:
        models = WorldModels.from_folder(EMBEDDED)
    except InputNotFound:
        models = None
    if models is None or models.motion_module is None:
        raise InputNotFound(
            f"this installation has no embedded default model (expected {EMBEDDED}); pass --base and "
            f"--motion-module, or rebuild it: animatediff world build OUT --ship {EMBEDDED}"
        )
    return models

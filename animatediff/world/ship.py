"""Ship a build: its weights as fp16 safetensors in the layout the package embeds (`layout.EMBEDDED`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from animatediff.base_model import STATEMENT_FILE
from animatediff.errors import InputNotFound
from animatediff.world.layout import (
    BUILD_FIGURES,
    LOOK_CLASSIFIER,
    MOTION_LORAS,
    MOTION_MODULE,
    PERSONALIZED,
    RECIPE_RECORD,
    SPARSECTRL_RGB,
)


def copy_fp16(source: Path, target: Path) -> None:
    """A safetensors file with its floating-point tensors in fp16 (metadata kept)."""
    from safetensors import safe_open

    from animatediff.formats.state_dicts import write_state_dict

    with safe_open(str(source), "pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    write_state_dict(target, half, metadata=metadata)


def write_fp16_base(base: Path, target: Path) -> None:
    """A base folder with its UNet, VAE and text encoder in fp16, the other files as they are."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(base, subfolder=sub, local_files_only=True)
        model.to(torch.float16).save_pretrained(target / sub, safe_serialization=True)
    for sub in ("tokenizer", "scheduler"):
        shutil.copytree(base / sub, target / sub)
    for name in ("model_index.json", RECIPE_RECORD, STATEMENT_FILE):
        if (base / name).is_file():
            shutil.copyfile(base / name, target / name)


def write_fp16_module(source: Path, target: Path) -> None:
    """A motion-module file in the official layout with fp16 weights."""
    from animatediff.formats import load_motion_modules, save_motion_modules

    save_motion_modules(load_motion_modules(source).to(torch.float16), target)


def ship(build_dir: str | os.PathLike, assets_dir: str | os.PathLike) -> Path:
    """Write a build's weights as fp16 safetensors in the layout the package embeds (base/ + motion module)."""
    build, assets = Path(build_dir), Path(assets_dir)
    if not (build / MOTION_MODULE).is_file():
        raise InputNotFound(f"{build} has no motion module to ship; run `world build` without --images-only")
    staging = assets.with_name(assets.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    write_fp16_base(build / "base", staging / "base")
    write_fp16_module(build / MOTION_MODULE, staging / MOTION_MODULE)
    loras = sorted((build / MOTION_LORAS).glob("*.safetensors"))
    # The RGB SparseCtrl encoder is trained beside the build (benchmarks/world_sparse_ctrl.py), on its base: shipped
    # where the build folder holds one, else left out (one trained on another base would not fit this one).
    for name in (LOOK_CLASSIFIER, SPARSECTRL_RGB, *PERSONALIZED.values(), *(str(p.relative_to(build)) for p in loras)):
        if (build / name).is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            copy_fp16(build / name, staging / name)
    if (build / BUILD_FIGURES).is_file():
        shutil.copyfile(build / BUILD_FIGURES, staging / BUILD_FIGURES)
    for path in staging.rglob("*"):
        # safetensors writes owner-only files; installed package data must be readable by every user
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(assets, ignore_errors=True)
    os.replace(staging, assets)
    return assets

"""The image half of the world's recipe: tokenizer → VAE → latents → UNet, saved as an SD1.x folder.

As in latent diffusion (Rombach et al. 2022): the VAE (`train_vae.py`) first, then the UNet and text encoder on its
latents (`train_unet.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from diffusers import AutoencoderKL

from animatediff.world.base_model import (
    BaseModelConfig,
    build_text_encoder,
    build_unet,
    build_vae,
    official_scheduler,
    save_base_folder,
)
from animatediff.world.datasets import WorldImages
from animatediff.world.layout import RECIPE_RECORD, write_statement
from animatediff.world.loops import training_device
from animatediff.world.scenes import BASE_WORLD, FULL_WORLD
from animatediff.world.tokenizer import world_tokenizer
from animatediff.world.train_unet import UnetTrainConfig, train_unet
from animatediff.world.train_vae import (
    VaeTrainConfig,
    encode_dataset,
    set_scaling_factor,
    standardize_latents,
    train_vae,
)


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides the world's base model: data, sizes, and both training stages."""

    model: BaseModelConfig = BaseModelConfig()
    """Component sizes."""
    vae: VaeTrainConfig = VaeTrainConfig()
    """VAE stage."""
    unet: UnetTrainConfig = UnetTrainConfig()
    """UNet stage."""
    num_images: int = 20_000
    """Distinct training images (rendered on the fly; the UNet stage caches their latents)."""
    data_seed: int = 0
    """Seed of the image dataset."""
    model_seed: int = 0
    """Seed of the initial weights (and so of the frozen text encoder)."""
    vae_world: str = "full"
    """Images the VAE learns to reconstruct: 'base' (the base UNet's own images) or 'full' (every shape and
    texture, stars and outlines included, as SD's VAE learned from a broader set than any fine-tune shows it: a
    personalized look can only appear if the shared decoder can draw it)."""
    standardize_latents: bool = True
    """Fold a per-channel shift and scale into the VAE so its latents are zero-mean, unit-spread per channel
    (`standardize_latents`) before the UNet trains, so sampling from unit noise starts where training ended."""

    def __post_init__(self) -> None:
        if self.vae_world not in ("base", "full"):
            raise ValueError(f"vae_world is 'base' or 'full', got {self.vae_world!r}")


def build_base_model(folder: str | os.PathLike, recipe: ImageRecipe = ImageRecipe()) -> Path:
    """Tokenizer → VAE → latents → UNet, written as an SD1.5-layout folder with the recipe in world.json and the
    guidance it samples at in animatediff.json.

    A folder that already holds a trained vae/ keeps it (only the UNet stage reruns), so the stages can be
    run one after the other.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = recipe.model
    device = training_device()
    tokenizer = world_tokenizer(folder / "tokenizer")
    text_encoder = build_text_encoder(tokenizer, cfg, recipe.model_seed).eval().requires_grad_(False).to(device)
    dataset = WorldImages(recipe.num_images, recipe.data_seed, BASE_WORLD, cfg.resolution, split="train")
    vae_images = dataset
    if recipe.vae_world == "full":
        vae_images = WorldImages(recipe.num_images, recipe.data_seed, FULL_WORLD, cfg.resolution, split="train")
    report: dict = {"recipe": asdict(recipe)}

    if (folder / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True).eval().to(device)
        if tuple(vae.config.block_out_channels) != tuple(cfg.vae_channels):
            raise ValueError(
                f"{folder / 'vae'} has channels {tuple(vae.config.block_out_channels)}, the recipe asks for "
                f"{tuple(cfg.vae_channels)}; remove that vae/ folder to train a new VAE"
            )
        previous = folder / RECIPE_RECORD
        earlier = json.loads(previous.read_text()).get("vae", {}) if previous.is_file() else {}
        report["vae"] = {**earlier, "reused": True}
    else:
        vae = build_vae(cfg, recipe.model_seed).to(device)
        vae_log = train_vae(vae, vae_images, recipe.vae)
        report["vae"] = {"final_mse": vae_log.mean(), "seconds": vae_log.seconds}
        vae.save_pretrained(folder / "vae")
    vae.requires_grad_(False)

    cache = encode_dataset(vae, dataset, progress=recipe.vae.progress)
    if recipe.standardize_latents:
        standardize_latents(vae, cache)  # idempotent: a reused, already standardized VAE comes out the same
        vae.save_pretrained(folder / "vae")
    factor = set_scaling_factor(vae, cache, recipe.data_seed)
    unet = build_unet(cfg, recipe.model_seed).to(device)
    unet_log = train_unet(unet, text_encoder, tokenizer, cache, factor, recipe.unet)
    report["unet"] = {"final_loss": unet_log.mean(), "seconds": unet_log.seconds, "scaling_factor": factor}

    text_encoder, vae, unet = text_encoder.cpu(), vae.cpu(), unet.cpu()
    save_base_folder(folder, tokenizer, text_encoder, vae, unet, official_scheduler(recipe.unet.zero_terminal_snr))
    (folder / RECIPE_RECORD).write_text(json.dumps(report, indent=2, default=_jsonable))
    write_statement(folder)
    return folder


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

"""Validation animations during training: the current motion module animates fixed prompts with a fixed seed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from animatediff.io.video import save_video
from animatediff.pipeline import AnimationPipeline
from animatediff.sampling import make_scheduler, model_noise_settings
from animatediff.train.config import ValidationConfig

if TYPE_CHECKING:
    from animatediff.train.trainer import Trainer


def prompt_slug(prompt: str) -> str:
    """A file-name-safe stem of a prompt: lower case, runs of other characters as one '-', at most 48 long."""
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48]


def sample_validation(
    pipe: AnimationPipeline,
    config: ValidationConfig,
    folder: Path,
    log_frames: Callable[[str, np.ndarray], None] | None = None,
) -> list[Path]:
    """One GIF per validation prompt under `folder` (`<i>-<slug>.gif`), each also handed to `log_frames(tag,
    frames)` for the trackers."""
    paths = []
    for i, prompt in enumerate(config.prompts):
        frames = pipe(
            prompt,
            config.negative_prompt,
            num_frames=config.num_frames,
            height=config.resolution,
            width=config.resolution,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            seed=config.seed,
            progress=False,
        )[0]
        slug = prompt_slug(prompt)
        paths.append(save_video(frames, folder / f"{i}-{slug}.gif", config.fps))
        if log_frames is not None:
            log_frames(f"validation/{i}-{slug}", frames)
    return paths


@torch.no_grad()
def validate_trainer(trainer: Trainer) -> list[Path]:
    """Animate the validation prompts with the trainer's current motion module (GIFs under
    output_dir/validation/step-N, and images for its trackers), leaving the modules training as before."""
    unet, step = trainer.unet, trainer.step
    trains = {id(p): p.requires_grad for p in unet.parameters()}
    folder = Path(trainer.config.output_dir) / "validation" / f"step-{step:08d}"
    # The pipeline puts the UNet in eval mode and freezes it; both are undone below. It samples as the run
    # trains (the base's prediction type and zero-SNR schedule) and at the base's default guidance.
    traits = trainer.traits
    settings = model_noise_settings(traits.prediction_type, traits.zero_snr)
    parts = (trainer.tokenizer, trainer.text_encoder, trainer.vae, unet)
    pipe = AnimationPipeline(
        *parts, make_scheduler("ddim"), settings, traits.guidance_scale, traits,
        trainer.tokenizer_2, trainer.text_encoder_2,
    )  # fmt: skip

    def log_frames(tag: str, frames: np.ndarray) -> None:  # (f, H, W, 3) floats in [0, 1]
        for tracker in trainer.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({tag: frames}, step=step, dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({tag: list(frames)}, step=step)

    try:
        with trainer.accelerator.autocast():
            return sample_validation(pipe, trainer.config.validation, folder, log_frames)
    finally:
        for p in unet.parameters():
            p.requires_grad_(trains[id(p)])
        unet.motion_modules.train()

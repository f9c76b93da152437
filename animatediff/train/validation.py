"""Validation animations during training: the current motion module animates fixed prompts with a fixed seed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from animatediff.io.video import save_video
from animatediff.pipeline import AnimationPipeline
from animatediff.train.config import ValidationConfig


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

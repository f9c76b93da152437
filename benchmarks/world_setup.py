"""What the world benchmarks that draw evaluation clips share: their clip options and the embedded pipeline."""

from __future__ import annotations

import argparse
import logging

import torch

from animatediff.pipeline import AnimationPipeline
from animatediff.world.layout import EMBEDDED


def clip_options(description: str, steps: bool = True) -> argparse.ArgumentParser:
    """A parser with --prompts, --seeds, --frames, --threads and (`steps`) --steps, at the evaluation's defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--prompts", type=int, default=8, help="evaluation prompts (the motions in turn)")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per prompt (0, 1, …)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    if steps:
        parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def embedded_pipeline(threads: int, quiet: bool = False) -> AnimationPipeline:
    """The embedded world's base and motion module on `threads` CPU threads; `quiet`: the text warnings silenced
    (words the world never saw, said once per clip)."""
    if quiet:
        logging.getLogger("animatediff").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    return AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")

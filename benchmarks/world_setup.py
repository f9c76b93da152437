"""What the world benchmarks that draw evaluation clips share: their clip options and the embedded pipeline."""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from animatediff.pipeline import AnimationPipeline
from animatediff.world.evaluate import Prompt, evaluation_prompts
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


def trained_options(
    description: str, run_dir: str, steps: int, seeds: int, sample_steps: int, scale: str
) -> argparse.ArgumentParser:
    """A parser for a benchmark that trains a world model and then samples with it: --run-dir, --steps (0: measure
    only), --learning-rate, --seeds, --sample-steps, --threads and --scale (`scale` names what it scales)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run-dir", default=run_dir, help="the training run's folder")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps to train to (0: measure only)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate")
    parser.add_argument("--seeds", type=int, default=seeds, help="sampling seeds per measured case (0, 1, …)")
    parser.add_argument("--sample-steps", type=int, default=sample_steps, help="DDIM steps per generated clip")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--scale", type=float, default=1.0, help=f"the {scale}")
    return parser


def evaluation_clips(args: argparse.Namespace) -> tuple[AnimationPipeline, list[Prompt], list[int]]:
    """What `clip_options` asks for: the embedded pipeline (its text warnings silenced) on --threads, --prompts
    evaluation prompts and the seeds 0 … --seeds − 1."""
    return embedded_pipeline(args.threads, quiet=True), evaluation_prompts(args.prompts), list(range(args.seeds))


def embedded_pipeline(threads: int, quiet: bool = False) -> AnimationPipeline:
    """The embedded world's base and motion module on `threads` CPU threads; `quiet`: the text warnings silenced
    (words the world never saw, said once per clip)."""
    if quiet:
        logging.getLogger("animatediff").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    return AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")


def frame_training_step(
    pipe: AnimationPipeline, latents: torch.Tensor, text: torch.Tensor, rng: np.random.Generator,
    optimizer: torch.optim.Optimizer, step: int, steps: int, start: float, **unet_kwargs: object,
) -> None:  # fmt: skip
    """One optimizer step of denoising single frames: `latents` (n, c, h, w) noised at random timesteps (drawn from
    `rng`), the UNet's ε-MSE with `text` and `unet_kwargs` (an adapter's features, image embeddings); the loss
    printed every 100 steps and at the last, with the seconds since `start`."""
    noise = torch.randn_like(latents)
    t = torch.from_numpy(rng.integers(0, pipe.scheduler.config.num_train_timesteps, latents.shape[0]))
    noisy = pipe.scheduler.add_noise(latents, noise, t)[:, :, None]  # one frame each
    pred = pipe.unet(noisy, t, text, **unet_kwargs)
    loss = torch.nn.functional.mse_loss(pred[:, :, 0], noise)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 100 == 0 or step == steps - 1:
        print(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)

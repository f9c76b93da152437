"""Which caption words a world base reads: how much its denoising loss rises when one word is swapped.

A motion module sees the caption only through the frozen base's features, so a base that ignores "left" versus
"right" (or "growing" versus "shrinking") leaves it nothing to tell the two apart. Measured on renderings of moving
objects, with the same noise and timesteps for every caption, this takes seconds on a CPU: the check to run on a
new base before its motion stage.
Given a motion module too, the same probe runs on whole clips through base + module, and tells whether the module
has learned to read the direction words that the base hands it.

Before any of that, a look the VAE cannot give back is one no UNet can draw: `vae_round_trip` sends renderings of
each look through the base's VAE and has the look classifier read them before and after.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from animatediff.world.render import render_image, render_video
from animatediff.world.scenes import BASE_WORLD, COLOURS, OPPOSITE_MOTIONS, SceneSpec, WorldConfig, sample_spec

DIRECTIONS = ("left", "right", "up", "down")
SCALINGS = ("growing", "shrinking")
PROBED_MOTIONS = {"directions": DIRECTIONS, "growing and shrinking": SCALINGS}
"""The motion families `world probe` measures, each on renderings of its own motions."""
PROBE_TIMESTEPS = (200, 400, 600, 800)
SWAPS = ("direction", "shape", "colour", "motion", "caption")


def _swapped(spec: SceneSpec, swap: str) -> str:
    """The caption of `spec` with one thing changed: 'direction' (the opposite motion: left and right, up and down,
    growing and shrinking), 'shape', 'colour' (to the next one the world has), 'motion' (the motion words dropped)
    or 'caption' (the empty caption)."""
    if swap == "direction":
        return replace(spec, motion=OPPOSITE_MOTIONS[spec.motion]).caption()
    if swap == "shape":
        shapes = BASE_WORLD.shapes
        return replace(spec, shape=shapes[(shapes.index(spec.shape) + 1) % len(shapes)]).caption()
    if swap == "colour":
        others = [c for c in COLOURS if c not in (spec.colour, spec.background)]
        return replace(spec, colour=others[0]).caption()
    if swap == "motion":
        return replace(spec, motion="still", amount=0.0).caption()
    if swap == "caption":
        return ""
    raise ValueError(f"unknown swap {swap!r}; choose one of: {', '.join(SWAPS)}")


@torch.no_grad()
def word_reliance(
    base: str | os.PathLike,
    images: int = 48,
    timesteps: tuple[int, ...] = PROBE_TIMESTEPS,
    seed: int = 0,
    motion_module: str | os.PathLike | None = None,
    frames: int = 16,
    motions: tuple[str, ...] = DIRECTIONS,
) -> dict[str, dict[int, float]]:
    """{swap: {timestep: relative rise of the denoising MSE}} over `images` renderings of objects doing `motions`
    (in turn; by default the four directions), caught mid-motion; 0.1 means a tenth more error with that word
    swapped. The reference loss is under 'true' (absolute). With `motion_module`, `images` whole clips of `frames`
    frames go through base + module."""

    from animatediff.base_model import load_base
    from animatediff.sampling import denoising_target
    from animatediff.text_encoding import encode_prompts

    folder = Path(base)
    model = load_base(folder)
    scheduler = model.traits.noise_scheduler()
    resolution = model.traits.native_size
    unknown = [m for m in motions if m not in OPPOSITE_MOTIONS]
    if not motions or unknown:
        raise ValueError(
            f"the probe swaps a motion for its opposite, so it takes {', '.join(OPPOSITE_MOTIONS)}; got {motions}"
        )
    rng = np.random.default_rng(seed)
    specs = [sample_spec(rng, BASE_WORLD, True, {"motion": motions[i % len(motions)]}) for i in range(images)]
    if motion_module is None:
        denoiser, clip_frames = model.unet, 1
        pixels = np.stack([render_image(s, resolution, float(rng.uniform(0.25, 1.0))).image for s in specs])
    else:
        from animatediff.formats.motion_module_files import load_motion_modules
        from animatediff.models import inflate_unet

        denoiser, clip_frames = inflate_unet(model.unet, load_motion_modules(motion_module)).eval(), frames
        pixels = np.stack([render_video(s, frames, resolution).frames for s in specs])
    x = torch.from_numpy(pixels).flatten(0, -4).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    latents = model.vae.encode(x).latent_dist.mean * model.vae.config.scaling_factor
    if motion_module is not None:  # (b f) c h w → b c f h w
        latents = latents.unflatten(0, (images, clip_frames)).transpose(1, 2)
    captions = {"true": [s.caption() for s in specs]} | {k: [_swapped(s, k) for s in specs] for k in SWAPS}
    texts = {k: encode_prompts(model.tokenizer, model.text_encoder, v) for k, v in captions.items()}
    result: dict[str, dict[int, float]] = {k: {} for k in captions}
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed + t))
        steps = torch.full((images,), t)
        noisy = scheduler.add_noise(latents, noise, steps)
        target = denoising_target(scheduler, latents, noise, steps)
        losses = {k: F.mse_loss(_predict(denoiser, noisy, steps, text), target).item() for k, text in texts.items()}
        result["true"][t] = losses["true"]
        for k in SWAPS:
            result[k][t] = (losses[k] - losses["true"]) / losses["true"]
    return result


def _predict(denoiser: torch.nn.Module, noisy: torch.Tensor, steps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    output = denoiser(noisy, steps, text)
    return output.sample if hasattr(output, "sample") else output


def reliance_table(result: dict[str, dict[int, float]]) -> str:
    """A Markdown table: one row per swap, one column per timestep, rises in percent."""
    steps = sorted(result["true"])
    lines = ["| swapped | " + " | ".join(f"t={t}" for t in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    lines.append("| (loss, nothing swapped) | " + " | ".join(f"{result['true'][t]:.4f}" for t in steps) + " |")
    for k in SWAPS:
        lines.append(f"| {k} | " + " | ".join(f"{100 * result[k][t]:+.1f} %" for t in steps) + " |")
    return "\n".join(lines)


def round_trip_looks() -> dict[str, WorldConfig]:
    """The looks `vae_round_trip` measures: the base world's shapes, and each personalization's look."""
    from animatediff.world.datasets import PERSONALIZATION_WORLDS

    return {
        "base shapes": BASE_WORLD,
        "stars": PERSONALIZATION_WORLDS["object"],
        "outlines": PERSONALIZATION_WORLDS["style"],
    }


@torch.no_grad()
def vae_round_trip(
    base: str | os.PathLike, looks: str | os.PathLike, images: int = 48, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{look: {"rendered": accuracy, "round trip": accuracy, "mse": reconstruction MSE}}: the fraction of `images`
    still renderings of each look that the look classifier at `looks` reads as their shape and texture, as
    rendered and after the base's VAE (posterior mean, decoded), and the round trip's MSE in [-1, 1] units."""
    from diffusers import AutoencoderKL

    from animatediff.world.looks import load_look_classifier

    vae = AutoencoderKL.from_pretrained(Path(base), subfolder="vae", local_files_only=True).eval()
    resolution = vae.config.sample_size  # the world's VAEs are built at the image side they learn
    classifier = load_look_classifier(looks)
    result = {}
    for i, (name, world) in enumerate(round_trip_looks().items()):
        rng = np.random.default_rng([seed, i])
        specs = [sample_spec(rng, world) for _ in range(images)]
        pixels = torch.from_numpy(np.stack([render_image(s, resolution).image for s in specs]))
        x = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        back = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        truth = [(s.shape, s.texture) for s in specs]
        result[name] = {
            "rendered": _look_accuracy(classifier, x, truth),
            "round trip": _look_accuracy(classifier, back, truth),
            "mse": F.mse_loss(back, x).item(),
        }
    return result


def _look_accuracy(classifier: torch.nn.Module, pixels: torch.Tensor, truth: list[tuple[str, str]]) -> float:
    shapes, textures = classifier.predict(((pixels + 1) / 2).permute(0, 2, 3, 1).numpy())
    return float(np.mean([look == want for look, want in zip(zip(shapes, textures), truth)]))


def round_trip_table(result: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per look."""
    lines = ["| look | renderings read right | after the VAE | round-trip MSE |", "|---|---|---|---|"]
    for name, r in result.items():
        lines.append(f"| {name} | {r['rendered']:.2f} | {r['round trip']:.2f} | {r['mse']:.4f} |")
    return "\n".join(lines)

"""A T2I-Adapter trained on the embedded world, and measured as the world ControlNet is: does it follow its control
images against the text?

1. Training: a full T2I-Adapter (one-channel input: Canny edges; features as wide as the world UNet's blocks) learns
   to steer the frozen embedded base, one still frame at a time, from the Canny edges of rendered world frames (any
   scene, any moment of its motion), their captions dropped half the time so that it also learns to draw from the
   edges alone. The adapter is written as a diffusers folder (`<run>/adapter`) and loaded back through
   `load_controlnet`, as a user's is.
2. Measurement (`world_controlnet.measure`): rendered clips of a red circle on blue moving right, left, up and down;
   each clip's Canny edges drive a prompt that says the opposite direction. Per row, generated clips moving as the
   control does and as the text says, next to the text alone, a prompt that agrees with the control, and one that
   names no motion.

    python benchmarks/world_t2i_adapter.py                   # 1500 steps (a few minutes on 2 cores), then 4 rows
    python benchmarks/world_t2i_adapter.py --steps 0         # measure the adapter already trained
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from diffusers import T2IAdapter
from world_controlnet import against_the_text
from world_setup import embedded_pipeline, frame_training_step, trained_options
from world_video_to_video import FRAMES, SIZE, STARTS

from animatediff.formats.controlnet import load_controlnet
from animatediff.pipeline.annotators import canny
from animatediff.text_encoding import encode_prompts
from animatediff.world.render import render_image
from animatediff.world.scenes import BASE_WORLD, sample_spec


def batch(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(frames (n, H, W, 3) in [0, 1], captions, Canny edges (n, 1, H, W)) of random world scenes at random moments."""
    frames, captions = [], []
    for _ in range(size):
        spec = sample_spec(rng, BASE_WORLD, video=True)
        rendering = render_image(spec, t=float(rng.random()))
        frames.append(rendering.image.astype(np.float32) / 255)
        captions.append(rendering.caption)
    frames = np.stack(frames)
    return frames, captions, canny(frames)[..., :1].transpose(0, 3, 1, 2)


def train(pipe, run: Path, steps: int, size: int, learning_rate: float) -> None:  # noqa: ANN001
    unet = pipe.unet.unet
    torch.manual_seed(0)
    adapter = T2IAdapter(in_channels=1, channels=list(unet.config.block_out_channels), num_res_blocks=2,
                         downscale_factor=pipe.vae_scale_factor, adapter_type="full_adapter")  # fmt: skip
    for p in pipe.unet.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=learning_rate)
    vae, rng = pipe.vae, np.random.default_rng(0)
    start = time.perf_counter()
    for step in range(steps):
        frames, captions, edges = batch(rng, size)
        captions = [c if keep else "" for c, keep in zip(captions, rng.random(size) > 0.5, strict=True)]
        with torch.no_grad():
            pixels = torch.from_numpy(frames).permute(0, 3, 1, 2) * 2 - 1
            latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
            text = encode_prompts(pipe.tokenizer, pipe.text_encoder, captions)
        features = list(adapter(torch.from_numpy(edges)))
        frame_training_step(pipe, latents, text, rng, optimizer, step, steps, start,
                            down_intrablock_additional_residuals=features)  # fmt: skip
    adapter.eval().save_pretrained(run / "adapter")


def main() -> None:
    parser = trained_options(__doc__.splitlines()[0], "runs/world-t2i-adapter", 1500, 4, 15, "adapter's scale")
    parser.add_argument("--batch", type=int, default=16, help="frames per step")
    parser.add_argument("--learning-rate-adapter", type=float, default=3e-4, help="AdamW learning rate")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if args.steps:
        train(pipe, run, args.steps, args.batch, args.learning_rate_adapter)
    adapter = load_controlnet(run / "adapter", pipe.unet.unet)
    print(f"\n## The world T2I-Adapter ({run / 'adapter'}): control edges of a clip against the text\n")
    print(f"{len(STARTS)} motions × {args.seeds} seeds, {FRAMES} frames of {SIZE}×{SIZE}, {args.sample_steps} DDIM "
          f"steps, guidance {pipe.guidance_scale:g}, adapter scale {args.scale:g}.\n")  # fmt: skip
    against_the_text(pipe, adapter, args, "T2I-Adapter")


if __name__ == "__main__":
    main()

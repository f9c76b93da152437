"""Image-to-video on the embedded world: an RGB SparseCtrl encoder trained on the world, then measured.

1. Training (`animatediff train`'s SparseCtrl mode, `controlnet.kind: sparsectrl`, `annotator: rgb`, through its
   Python entry with the world's clips as a custom dataset): the encoder, copied from the embedded base's UNet,
   learns to steer the frozen base and the frozen embedded motion module from the VAE latents of 1 or 2 random
   frames of each clip (frame 0 among them in 70 % of the clips). Resumable: a rerun continues from the newest
   checkpoint in --run-dir. `--ship` writes the trained encoder in fp16 where the package embeds it
   (`animatediff/assets/world/sparsectrl_rgb.safetensors`), so that `animatediff generate --keyframe 0:IMAGE`
   uses it when no model is named.
2. Measurement, on rendered clips (a shape, colour, background, and a direction of motion, drawn from a fixed seed)
   and their captions:
   - image-to-video: the clip's first frame as keyframe 0. Per clip: the generated first frame's pixel MSE against
     the rendered one, with the encoder and without (same prompt and seed); whether the object then moves as
     captioned (`world.metrics`: the tracked centroid travels that way).
   - two keyframes, the first and the last rendered frames at 0 and 15: whether the generated object's centroid is
     within 0.1 of the side of the rendered one at both.

    python benchmarks/world_sparse_ctrl.py --ship          # 3000 steps (about 40 min on 2 cores), then measure
    python benchmarks/world_sparse_ctrl.py --steps 0       # measure the encoder already trained
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from world_controlnet import train_on_world  # beside this file, as the circles of world_video_to_video.py
from world_video_to_video import FRAMES, SIZE, STARTS

from animatediff.formats.sparse_ctrl import load_sparse_ctrl, save_sparse_ctrl
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.sparse_ctrl import SparseCtrl
from animatediff.train.checkpoints import list_checkpoints
from animatediff.train.sparse_ctrl import SPARSECTRL_FILE
from animatediff.world.layout import EMBEDDED, MOTION_MODULE, SPARSECTRL_RGB
from animatediff.world.metrics import motion_correct, track
from animatediff.world.render import render_video
from animatediff.world.scenes import SceneSpec

SHAPES, COLOURS, BACKGROUNDS = ("circle", "square", "triangle"), ("red", "green", "yellow"), ("blue", "black", "gray")


def scenes(count: int, seed: int) -> list[SceneSpec]:
    """`count` rendered scenes cycling through the four directions, shape, colour and background drawn at random."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        motion = list(STARTS)[i % len(STARTS)]
        x, y = STARTS[motion]
        out.append(
            SceneSpec(str(rng.choice(SHAPES)), str(rng.choice(COLOURS)), str(rng.choice(BACKGROUNDS)), motion=motion,
                      amount=0.3, x=x, y=y, size=0.15)
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/world-sparsectrl", help="the training run's folder")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps to train to (0: measure only)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate")
    parser.add_argument("--clips", type=int, default=4000, help="distinct world clips to train on")
    parser.add_argument("--ship", action="store_true", help="write the encoder (fp16) into the embedded assets")
    parser.add_argument("--scenes", type=int, default=16, help="rendered clips to measure on")
    parser.add_argument("--sample-steps", type=int, default=15, help="DDIM steps per generated clip")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    if args.steps:
        encoder = {"kind": "sparsectrl", "annotator": "rgb", "max_keyframes": 2, "first_frame_rate": 0.7}
        checkpoint = train_on_world(run_dir, args.steps, args.learning_rate, args.clips, 0, encoder, 0.1)
        exported = checkpoint / SPARSECTRL_FILE
    else:
        exported = list_checkpoints(run_dir / "checkpoints")[-1] / SPARSECTRL_FILE
    if args.ship:
        shipped = save_sparse_ctrl(load_sparse_ctrl(exported).half(), EMBEDDED / SPARSECTRL_RGB)
        shipped.chmod(0o644)  # installed package data is read by every user
        print(f"shipped {shipped} ({shipped.stat().st_size / 2**20:.1f} MiB)")
    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / MOTION_MODULE)
    encoder = load_sparse_ctrl(exported, pipe.unet.config)
    steps = dict(num_frames=FRAMES, num_inference_steps=args.sample_steps, progress=False)

    first_better = moves = moves_plain = both_ends = both_ends_plain = 0
    errors, errors_plain = [], []
    start = time.perf_counter()
    specs = scenes(args.scenes, seed=1)
    for seed, spec in enumerate(specs):
        truth = render_video(spec, FRAMES, SIZE).frames.astype(np.float32) / 255.0
        prompt = spec.caption()
        first = SparseCtrl(encoder, {0: truth[0]})
        ends = SparseCtrl(encoder, {0: truth[0], FRAMES - 1: truth[-1]})
        with_first = pipe(prompt, seed=seed, sparse_ctrls=[first], **steps)[0]
        plain = pipe(prompt, seed=seed, **steps)[0]
        with_ends = pipe(prompt, seed=seed, sparse_ctrls=[ends], **steps)[0]
        error, error_plain = float(np.mean((with_first[0] - truth[0]) ** 2)), float(np.mean((plain[0] - truth[0]) ** 2))
        errors.append(error)
        errors_plain.append(error_plain)
        first_better += error < error_plain
        moves += motion_correct(track(with_first), spec.motion)
        moves_plain += motion_correct(track(plain), spec.motion)
        want = track(truth[[0, -1]])
        for frames, counts in ((with_ends, "with"), (plain, "plain")):
            got = track(frames[[0, -1]])
            near = bool(np.all(np.hypot(got.x - want.x, got.y - want.y) < 0.1))
            both_ends += near and counts == "with"
            both_ends_plain += near and counts == "plain"
    n = len(specs)
    seconds = (time.perf_counter() - start) / (3 * n)
    print(f"\n## Image-to-video on the world: the RGB SparseCtrl encoder ({exported})\n")
    print(f"{n} rendered clips (shape, colour, background at random; 4 directions), {FRAMES} frames of {SIZE}×{SIZE},")
    print(f"{args.sample_steps} DDIM steps, guidance {pipe.guidance_scale:g}, scale 1; {seconds:.1f} s per clip.\n")
    print("| measure | with SparseCtrl | without |")
    print("|---|---|---|")
    print(f"| first frame: pixel MSE against the rendered one (median) | {np.median(errors):.4f} | "
          f"{np.median(errors_plain):.4f} |")  # fmt: skip
    print(f"| first frame closer to the rendered one than without | {first_better} of {n} | – |")
    print(f"| moves as captioned (keyframe 0 only) | {moves} of {n} | {moves_plain} of {n} |")
    print(f"| keyframes 0 and 15: object within 0.1 of both rendered positions | {both_ends} of {n} | "
          f"{both_ends_plain} of {n} |")  # fmt: skip


if __name__ == "__main__":
    main()

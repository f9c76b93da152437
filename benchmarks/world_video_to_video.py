"""Video-to-video measured on the embedded world: rendered clips of a red circle moving left, right, up or down,
re-drawn as "a red star moving <the same way> on a blue background" with the star DreamBooth over the embedded base,
at several strengths. Per strength it prints how many clips keep the input's motion direction (`world.metrics`:
the tracked centroid travels the captioned way) and how often the look classifier reads a star (`world.looks`),
against the input clips' own figures (and, with --text2video, text-to-video from noise with the same prompts and
seeds). Every clip's input, prompt and seed are fixed, so a rerun on the same machine prints the same figures.

    python benchmarks/world_video_to_video.py                # 3 strengths × 8 clips: 3-5 minutes on 2 CPU cores
    python benchmarks/world_video_to_video.py --text2video   # and text-to-video from noise (2 minutes more)
    python benchmarks/world_video_to_video.py --strengths 0.5 --seeds 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from animatediff.pipeline import AnimationPipeline
from animatediff.world.layout import EMBEDDED
from animatediff.world.looks import load_look_classifier
from animatediff.world.metrics import motion_correct, track
from animatediff.world.render import render_video
from animatediff.world.scenes import SceneSpec

FRAMES, SIZE = 16, 32
STARTS = {"left": (0.7, 0.5), "right": (0.3, 0.5), "up": (0.5, 0.7), "down": (0.5, 0.3)}
"""Where each motion's object starts (x, y), so that it travels 0.3 of the side and stays in the frame."""


def input_clip(motion: str) -> np.ndarray:
    """The ground truth: a red circle on blue moving `motion`, float (16, 32, 32, 3) in [0, 1]."""
    x, y = STARTS[motion]
    spec = SceneSpec("circle", "red", "blue", motion=motion, amount=0.3, x=x, y=y, size=0.15)
    return render_video(spec, FRAMES, SIZE).frames.astype(np.float32) / 255.0


def prompt(motion: str) -> str:
    return f"a red star moving {motion} on a blue background"


def star_rate(classifier: torch.nn.Module, frames: np.ndarray) -> float:
    """The fraction of frames the look classifier reads as a star."""
    shapes, _ = classifier.predict(frames)
    return float(np.mean([shape == "star" for shape in shapes]))


def row(name: str, clips: list[tuple[str, np.ndarray]], classifier: torch.nn.Module, seconds: float) -> str:
    kept = sum(motion_correct(track(frames), motion) for motion, frames in clips)
    stars = np.mean([star_rate(classifier, frames) for _, frames in clips])
    per_clip = f"{seconds / len(clips):.1f}" if seconds else "–"
    return f"| {name} | {kept} of {len(clips)} | {stars:.2f} | {per_clip} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strengths", type=float, nargs="*", default=[0.5, 0.65, 0.8], help="video-to-video strengths")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per motion (0, 1, …)")
    parser.add_argument("--steps", type=int, default=15, help="DDIM steps at strength 1 (a strength runs its share)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--text2video", action="store_true", help="add a row of text-to-video from noise")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = AnimationPipeline.from_pretrained(
        EMBEDDED / "base",
        EMBEDDED / "motion_module.safetensors",
        dreambooth=EMBEDDED / "personalized" / "star_dreambooth.safetensors",
    )
    classifier = load_look_classifier(EMBEDDED / "look_classifier.safetensors")
    inputs = {motion: input_clip(motion) for motion in STARTS}
    jobs = [(motion, seed) for motion in STARTS for seed in range(args.seeds)]

    print(f"\n## Video-to-video on the world: a red circle → '{prompt('<motion>')}', star DreamBooth\n")
    print(f"{len(jobs)} clips per row ({len(STARTS)} motions × {args.seeds} seeds from 0), {FRAMES} frames of ", end="")
    print(f"{SIZE}×{SIZE}, {args.steps} DDIM steps at strength 1 (int(steps · strength) run), guidance ", end="")
    print(f"{pipe.guidance_scale:g}.\n")
    print("| start | keeps the input's motion direction | star rate (look classifier) | s/clip |")
    print("|---|---|---|---|")
    print(row("input clips (rendered circles)", [(m, inputs[m]) for m, _ in jobs], classifier, 0.0), flush=True)
    for strength in args.strengths:
        start, clips = time.perf_counter(), []
        for motion, seed in jobs:
            frames = pipe(
                prompt(motion), num_frames=FRAMES, num_inference_steps=args.steps, seed=seed, progress=False,
                video=inputs[motion], strength=strength,
            )[0]  # fmt: skip
            clips.append((motion, frames))
        print(row(f"video, strength {strength:g}", clips, classifier, time.perf_counter() - start), flush=True)
    if args.text2video:
        start, clips = time.perf_counter(), []
        for motion, seed in jobs:
            frames = pipe(prompt(motion), num_frames=FRAMES, num_inference_steps=args.steps, seed=seed, progress=False)
            clips.append((motion, frames[0]))
        print(row("noise (text-to-video)", clips, classifier, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()

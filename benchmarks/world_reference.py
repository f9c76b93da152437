"""Reference-only on the embedded world: a still picture, and prompts that name neither its colour nor its background.

The world's captions give the object's colour and the background; here the prompts name the shape and the motion
only ('a circle moving right'), so colour and background can come from nowhere but the base's habits and the
reference picture: a rendered still of a circle of one colour on one background (the pairs go round the world's
colours and backgrounds). Counted as `world eval` counts (`world.metrics`): clips whose object is in the picture's
colour, clips whose background (the median of the pixels off the object) is nearest the picture's, and clips moving
as captioned, without a reference and with one read by self-attention (A1111's reference_only), by AdaIN
(reference_adain) and by both.

    python benchmarks/world_reference.py                  # 10 pictures × 4 rows, about 5 minutes on 2 cores
    python benchmarks/world_reference.py --fidelity 1     # another style fidelity
    python benchmarks/world_reference.py --background black   # prompts naming the background, as in the pictures
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from world_setup import embedded_pipeline

from animatediff.pipeline.reference import Reference
from animatediff.world.metrics import colour_correct, consistency, motion_correct, object_mask, track
from animatediff.world.render import render_image
from animatediff.world.scenes import BACKGROUNDS, BASE_WORLD, sample_spec

MOTIONS = ("right", "left", "up", "down")
ROWS = {"none": None, "reference_only": (True, False), "reference_adain": (False, True), "adain+attn": (True, True)}


def picture(colour: str, background: str, seed: int) -> np.ndarray:
    """A still of a circle of `colour` on `background`, where the world draws it."""
    fixed = {"colour": colour, "shape": "circle", "texture": "solid", "background": background}
    spec = sample_spec(np.random.default_rng(seed), BASE_WORLD, fixed=fixed)
    return render_image(spec).image


def background_of(frames: np.ndarray) -> str:
    """The world's background nearest the median of the clip's pixels off its object."""
    off = np.concatenate([frame[~object_mask(frame)] for frame in frames])
    names = list(BACKGROUNDS)
    palette = np.asarray([BACKGROUNDS[n] for n in names]) / 255.0
    return names[int(np.argmin(np.linalg.norm(palette - np.median(off, axis=0), axis=1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per colour (0, 1, …)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per clip")
    parser.add_argument("--fidelity", type=float, default=0.5, help="the reference's style fidelity")
    parser.add_argument("--background", default="", help="a background every picture and prompt names")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    grounds = [args.background] if args.background else [b for b in BACKGROUNDS if b not in BASE_WORLD.colours]
    clips = [(colour, grounds[(i + seed) % len(grounds)], seed) for i, colour in enumerate(BASE_WORLD.colours)
             for seed in range(args.seeds)]  # fmt: skip
    named = f"on a {args.background} background" if args.background else "no colour, no background"
    print(f"\n## Reference-only on the world ({args.steps} DDIM steps, style fidelity {args.fidelity}, {len(clips)} "
          f"clips a row; the prompts name {named})\n")  # fmt: skip
    print("| reference | object in the picture's colour | background the picture's | moving as captioned | "
          "consistency | s/clip |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for label, mode in ROWS.items():
        hits = grounded = moved = 0
        kept, start = [], time.perf_counter()
        for i, (colour, background, seed) in enumerate(clips):
            motion = MOTIONS[i % len(MOTIONS)]
            prompt = f"a circle moving {motion}" + (f" on a {args.background} background" if args.background else "")
            image = picture(colour, background, 100 + i)
            reference = None if mode is None else Reference(image, *mode, style_fidelity=args.fidelity)
            frames = pipe(prompt, seed=seed, num_inference_steps=args.steps, progress=False, reference=reference)[0]
            path = track(frames)
            hits += colour_correct(path, colour)
            grounded += background_of(frames) == background
            moved += motion_correct(path, motion)
            kept.append(consistency(path))
        n, seconds = len(clips), (time.perf_counter() - start) / len(clips)
        print(f"| {label} | {hits}/{n} | {grounded}/{n} | {moved}/{n} | {np.mean(kept):.2f} | {seconds:.1f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""Reference-only on the embedded world: a still picture of the object, and prompts that name no colour.

The world's captions leave the object's colour to the text; here the prompts name the shape, the motion and the
background only ('a circle moving right on a black background'), so the colour can come from nowhere but the
reference picture: a rendered still of a circle of one colour on black. Counted as `world eval` counts
(`world.metrics`): clips in the picture's colour, and clips moving as captioned, without a reference (chance) and
with one read by self-attention (A1111's reference_only), by AdaIN (reference_adain) and by both.

    python benchmarks/world_reference.py                  # 5 colours × 2 seeds × 4 rows, about 5 minutes on 2 cores
    python benchmarks/world_reference.py --fidelity 0     # another style fidelity
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from world_setup import embedded_pipeline

from animatediff.pipeline.reference import Reference
from animatediff.world.metrics import colour_correct, consistency, motion_correct, track
from animatediff.world.render import render_image
from animatediff.world.scenes import BASE_WORLD, sample_spec

MOTIONS = ("right", "left", "up", "down")
ROWS = {"none": None, "reference_only": (True, False), "reference_adain": (False, True), "adain+attn": (True, True)}


def picture(colour: str, seed: int) -> np.ndarray:
    """A still of a circle of `colour` on black, where the world draws it."""
    fixed = {"colour": colour, "shape": "circle", "texture": "solid", "background": "black"}
    spec = sample_spec(np.random.default_rng(seed), BASE_WORLD, fixed=fixed)
    return render_image(spec).image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per colour (0, 1, …)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per clip")
    parser.add_argument("--fidelity", type=float, default=0.5, help="the reference's style fidelity")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    clips = [(colour, seed) for colour in BASE_WORLD.colours for seed in range(args.seeds)]
    print(f"\n## Reference-only on the world ({args.steps} DDIM steps, style fidelity {args.fidelity}, {len(clips)} "
          "clips a row; the prompts name no colour)\n")  # fmt: skip
    print("| reference | clips in the picture's colour | moving as captioned | consistency | s/clip |")
    print("|---|---|---|---|---|")
    for label, mode in ROWS.items():
        hits = moved = 0
        kept, start = [], time.perf_counter()
        for i, (colour, seed) in enumerate(clips):
            motion = MOTIONS[i % len(MOTIONS)]
            prompt = f"a circle moving {motion} on a black background"
            reference = (
                None if mode is None else Reference(picture(colour, 100 + i), *mode, style_fidelity=args.fidelity)
            )
            frames = pipe(prompt, seed=seed, num_inference_steps=args.steps, progress=False, reference=reference)[0]
            path = track(frames)
            hits += colour_correct(path, colour)
            moved += motion_correct(path, motion)
            kept.append(consistency(path))
        n, seconds = len(clips), (time.perf_counter() - start) / len(clips)
        print(f"| {label} | {hits}/{n} | {moved}/{n} | {np.mean(kept):.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""The gradual latent hires fix (`--gradual-latent`) on the embedded world: clips drawn at 64 and 96 px (two and three
times the 32 px the world was trained at) directly, against the same prompts and seeds drawn with their first 70 % of
steps on latents of the world's own size (prompt-travel's default going back: 5 steps, the noise added 3 times).

Counted per row, as `animatediff world eval` measures (`world.metrics`): the clips moving as captioned and of the
captioned colour, and the mean consistency of the tracked object; and the seconds a clip takes.

    python benchmarks/world_gradual_latent.py                  # 4 rows × 16 clips: about 25 minutes on 2 CPU cores
    python benchmarks/world_gradual_latent.py --prompts 4 --seeds 1 --sizes 64
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.sampling.gradual_latent import GradualLatent
from animatediff.world.metrics import colour_correct, consistency, motion_correct, track


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96], help="clip sizes in pixels")
    parser.add_argument("--switch", type=float, default=0.7, help="the fraction of the steps the full size starts at")
    args = parser.parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    print("\n## The gradual latent hires fix (--gradual-latent), on the embedded world\n")
    print(f"{clips} clips per row ({len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames, {args.steps} "
          f"DDIM steps, {args.threads} CPU threads; gradual rows: 32 px latents until {args.switch:.0%} of the steps, "
          "then the full size.\n")  # fmt: skip
    print("| row | size | moves as captioned | captioned colour | consistency (mean) | s/clip |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        gradual = GradualLatent({0: 32 / size, args.switch: 1.0})
        for label, option in (("drawn directly", None), ("gradual latent", gradual)):
            moved = coloured = 0
            scores = []
            start = time.perf_counter()
            for prompt in prompts:
                for seed in seeds:
                    frames = pipe(prompt.text, seed=seed, height=size, width=size, num_frames=args.frames,
                                  num_inference_steps=args.steps, gradual_latent=option, progress=False)[0]  # fmt: skip
                    t = track(frames)
                    moved += motion_correct(t, prompt.motion)
                    coloured += colour_correct(t, prompt.colour)
                    scores.append(consistency(t))
            seconds = (time.perf_counter() - start) / clips
            print(f"| {label} | {size} px | {moved}/{clips} | {coloured}/{clips} | {np.mean(scores):.2f} | "
                  f"{seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

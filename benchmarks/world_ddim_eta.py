"""DDIM's eta on the embedded world: fresh noise at each step, from 0 (deterministic, the official sampling) to 1.

Counted per row, over clips of the evaluation prompts: clips moving as captioned (`world.metrics.motion_correct`)
and clips of the captioned colour (`colour_correct`), the mean absolute difference of its frames from the same clip
(prompt and seed) at eta 0, how far apart the two seeds' clips of a prompt are (the variety the step noise adds),
and the seconds per clip.

    python benchmarks/world_ddim_eta.py                  # 4 rows × 16 clips: a few minutes on 2 CPU cores
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.sampling import for_model
from animatediff.sampling.presets import resolve_sampling
from animatediff.world.metrics import colour_correct, motion_correct, track

ETAS = (0.0, 0.3, 0.6, 1.0)


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    print(f"\n## DDIM's eta on the embedded world ({clips} clips a row: {len(prompts)} prompts × {len(seeds)} seeds, "
          f"{args.frames} frames, {args.steps} DDIM steps)\n")  # fmt: skip
    print("| eta | moves as captioned | captioned colour | difference from eta 0 | difference between seeds "
          "| s per clip |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    deterministic: dict[tuple[str, int], np.ndarray] = {}
    for eta in ETAS:
        pipe.scheduler = for_model(resolve_sampling(ddim_eta=eta).make_scheduler(), pipe.noise_settings)
        moved, coloured, seconds, differences, spread = 0, 0, 0.0, [], []
        for prompt in prompts:
            drawn = []
            for seed in seeds:
                start = time.perf_counter()
                frames = pipe(prompt.text, seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                              progress=False)[0]  # fmt: skip
                seconds += time.perf_counter() - start
                drawn.append(frames)
                first = deterministic.setdefault((prompt.text, seed), frames)
                differences.append(float(np.abs(frames - first).mean()))
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
            spread += [float(np.abs(a - b).mean()) for i, a in enumerate(drawn) for b in drawn[i + 1 :]]
        print(f"| {eta:g} | {moved}/{clips} | {coloured}/{clips} | {np.mean(differences):.4f} | "
              f"{np.mean(spread):.4f} | {seconds / clips:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

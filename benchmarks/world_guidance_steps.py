"""The guidance scale keyframed by step (`guidance_scale_steps`, Evolved's custom CFG keyframes) on the embedded
world: its guidance (3) on every step, on none, on the first 60% of the steps only, and on the last 60% only.

Counted per row, over clips of the evaluation prompts: clips moving as captioned (`world.metrics.motion_correct`)
and clips of the captioned colour (`colour_correct`), the mean absolute difference of its frames from the same clip
(prompt and seed) guided on every step, the UNet passes' videos per clip (a guided step runs two, an unguided one
one) and the seconds per clip.

    python benchmarks/world_guidance_steps.py           # 4 rows × 16 clips: a few minutes on 2 CPU cores
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.world.layout import WORLD_GUIDANCE_SCALE
from animatediff.world.metrics import colour_correct, motion_correct, track


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    g = WORLD_GUIDANCE_SCALE
    rows = {f"{g:g} on every step": (g, None), "1 on every step (unguided)": (1.0, None),
            f"{g:g}, then 1 from 60% of the steps": (g, {0.6: 1.0}),
            f"1, then {g:g} from 40% of the steps": (1.0, {0.4: g})}  # fmt: skip
    clips = len(prompts) * len(seeds)
    print(f"\n## The guidance scale keyframed by step on the embedded world ({clips} clips a row: {len(prompts)} "
          f"prompts × {len(seeds)} seeds, {args.frames} frames, {args.steps} DDIM steps)\n")  # fmt: skip
    print("| guidance | moves as captioned | captioned colour | difference from guided throughout "
          "| UNet videos per clip | s per clip |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    guided: dict[tuple[str, int], np.ndarray] = {}
    for label, (scale, keyframes) in rows.items():
        moved, coloured, videos, seconds, differences = 0, 0, [], 0.0, []
        hook = pipe.unet.register_forward_pre_hook(lambda _, inputs, seen=videos: seen.append(inputs[0].shape[0]))
        for prompt in prompts:
            for seed in seeds:
                start = time.perf_counter()
                frames = pipe(prompt.text, seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                              guidance_scale=scale, guidance_scale_steps=keyframes, progress=False)[0]  # fmt: skip
                seconds += time.perf_counter() - start
                first = guided.setdefault((prompt.text, seed), frames)
                differences.append(float(np.abs(frames - first).mean()))
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
        hook.remove()
        print(f"| {label} | {moved}/{clips} | {coloured}/{clips} | {np.mean(differences):.4f} | "
              f"{sum(videos) / clips:.0f} | {seconds / clips:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

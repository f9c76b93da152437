"""Composable prompts (`prompt_and`, A1111's AND) on the embedded world: a caption moving right AND the same caption
moving up, against each alone and against the two motions written in one prompt.

Counted per row: the clips travelling right, travelling up, and both at once (the tracked object's net travel at
least 0.08 of the side along each axis, `world.metrics`), and the mean direction of travel (0° right, 90° up).

    python benchmarks/world_prompt_and.py                # 6 rows × 16 clips: about five minutes on 2 CPU cores
    python benchmarks/world_prompt_and.py --prompts 4 --seeds 1
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.world.evaluate import Prompt
from animatediff.world.metrics import displacement, track


def caption(prompt: Prompt, motion: str) -> str:
    return Prompt(prompt.colour, prompt.shape, motion, prompt.background, prompt.texture).text


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    args = parser.parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    print("\n## Composable prompts (AND), on the embedded world\n")
    print(f"{clips} clips per row ({len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames, {args.steps} "
          f"DDIM steps, guidance 7.5. {args.threads} CPU threads.\n")  # fmt: skip
    print("| prompt | right | up | right and up | mean direction | s/clip |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("R (moving right)", lambda p: caption(p, "right"), False),
        ("U (moving up)", lambda p: caption(p, "up"), False),
        ("R AND U", lambda p: f"{caption(p, 'right')} AND {caption(p, 'up')}", True),
        ("R :0.7 AND U :0.3", lambda p: f"{caption(p, 'right')} :0.7 AND {caption(p, 'up')} :0.3", True),
        ("R :0.3 AND U :0.7", lambda p: f"{caption(p, 'right')} :0.3 AND {caption(p, 'up')} :0.7", True),
        ("'… moving right and moving up' (one prompt)", lambda p: f"{caption(p, 'right')} and moving up", False),
    ]
    for label, text, composed in rows:
        right = up = both = 0
        angles = []
        start = time.perf_counter()
        for prompt in prompts:
            for seed in seeds:
                frames = pipe(text(prompt), seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                              guidance_scale=7.5, prompt_and=composed, progress=False)[0]  # fmt: skip
                dx, dy = displacement(track(frames))
                right += dx >= 0.08
                up += -dy >= 0.08
                both += dx >= 0.08 and -dy >= 0.08
                angles.append(np.degrees(np.arctan2(-dy, dx)))
        seconds = (time.perf_counter() - start) / clips
        print(f"| {label} | {right}/{clips} | {up}/{clips} | {both}/{clips} | {np.mean(angles):.0f}° | {seconds:.1f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

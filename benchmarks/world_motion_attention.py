"""The motion attention scale (`motion_attention_scale`, ComfyUI-AnimateDiff-Evolved's motion scale: the temporal
attention's keys multiplied by it) on the embedded world, at several scales and with a mask that keeps 1 on the
left half and 0 on the right.

Counted per row, over clips of the evaluation prompts that move in a direction: clips moving as captioned, the mean
net travel of the object along the captioned direction (`world.metrics.displacement`, in frame widths), and the
clips that travel further than the same clip (prompt and seed) at scale 1.

    python benchmarks/world_motion_attention.py           # 5 rows × 8 clips: a few minutes on 2 CPU cores
    python benchmarks/world_motion_attention.py --frames 24 --free-noise 16   # every row under FreeNoise
"""

from __future__ import annotations

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline.free_noise import FreeNoise
from animatediff.world.metrics import DIRECTIONS, displacement, motion_correct, track


def travel(frames: np.ndarray, motion: str) -> float:
    """Net travel along the captioned direction, in frame widths."""
    dx, dy = displacement(track(frames))
    ux, uy = DIRECTIONS[motion]
    return dx * ux + dy * uy


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    parser.add_argument("--free-noise", type=int, default=None, metavar="LENGTH",
                        help="every row under FreeNoise with windows of LENGTH frames (stride 4)")  # fmt: skip
    args = parser.parse_args()
    free_noise = None if args.free_noise is None else FreeNoise(args.free_noise, 4)
    pipe, prompts, seeds = evaluation_clips(args)
    prompts = [p for p in prompts if p.motion in DIRECTIONS]
    size = 32
    left = np.zeros((size, size), np.float32)
    left[:, : size // 2] = 1
    rows = {"1 (as trained)": (1.0, None), "0.5": (0.5, None), "1.5": (1.5, None), "2.0": (2.0, None),
            "1.5, mask: left half": (1.5, left)}  # fmt: skip
    clips = len(prompts) * len(seeds)
    print(f"\n## The motion attention scale on the embedded world ({clips} clips a row: {len(prompts)} prompts moving "
          f"in a direction × {len(seeds)} seeds, {args.frames} frames, {args.steps} DDIM steps"
          f"{'' if free_noise is None else f', FreeNoise windows of {free_noise.context_length}'})\n")  # fmt: skip
    print("| scale | moves as captioned | mean travel along the caption | travels further than at 1 |")
    print("|---|---|---|---|")
    base: dict[tuple[int, int], float] = {}
    for label, (scale, mask) in rows.items():
        moved, travels, further = 0, [], 0
        for i, prompt in enumerate(prompts):
            for seed in seeds:
                frames = pipe(prompt.text, seed=seed, height=size, width=size, num_frames=args.frames,
                              num_inference_steps=args.steps, progress=False, motion_attention_scale=scale,
                              motion_attention_mask=mask, free_noise=free_noise)[0]  # fmt: skip
                moved += motion_correct(track(frames), prompt.motion)
                distance = travel(frames, prompt.motion)
                travels.append(distance)
                if scale == 1.0 and mask is None:
                    base[i, seed] = distance
                else:
                    further += distance > base[i, seed]
        shown = "–" if scale == 1.0 and mask is None else f"{further}/{clips}"
        print(f"| {label} | {moved}/{clips} | {np.mean(travels):.3f} | {shown} |", flush=True)


if __name__ == "__main__":
    main()

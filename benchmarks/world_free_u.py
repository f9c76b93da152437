"""FreeU (`free_u`, diffusers' `enable_freeu`) on the embedded world: off, at diffusers' SD1.5 values and at
ComfyUI's defaults.

Counted per row, over clips of the evaluation prompts: clips moving as captioned (`world.metrics.motion_correct`),
clips of the captioned colour (`colour_correct`), the mean temporal consistency (`consistency`: steady area, colour
and path), the mean absolute difference of its frames from the same clip (prompt and seed) without FreeU, and the
object's mean contrast with the background (the distance of the object's mean colour from the median of the frame's
border).

    python benchmarks/world_free_u.py           # 3 rows × 16 clips: a few minutes on 2 CPU cores
"""

from __future__ import annotations

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline import FreeU
from animatediff.world.metrics import colour_correct, consistency, motion_correct, object_mask, track


def contrast(frames: np.ndarray) -> float:
    """The object's mean colour against the background's (the median colour of the frame's border, as
    `object_mask` takes it), mean over frames."""
    out = []
    for frame in frames:
        mask = object_mask(frame)
        border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
        if mask.any():
            out.append(float(np.linalg.norm(frame[mask].mean(0) - np.median(border, axis=0))))
    return float(np.mean(out)) if out else 0.0


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    rows = {"off": None, "b1=1.5, b2=1.6, s1=0.9, s2=0.2 (diffusers' SD1.5)": FreeU(1.5, 1.6, 0.9, 0.2),
            "b1=1.3, b2=1.4, s1=0.9, s2=0.2 (ComfyUI's defaults)": FreeU(1.3, 1.4, 0.9, 0.2)}  # fmt: skip
    clips = len(prompts) * len(seeds)
    print(f"\n## FreeU on the embedded world ({clips} clips a row: {len(prompts)} prompts × {len(seeds)} seeds, "
          f"{args.frames} frames, {args.steps} DDIM steps)\n")  # fmt: skip
    print("| FreeU | moves as captioned | captioned colour | consistency | difference from off | contrast |")
    print("|---|---|---|---|---|---|")
    off: dict[tuple[str, int], np.ndarray] = {}
    for label, free_u in rows.items():
        moved, coloured, steady, differences, contrasts = 0, 0, [], [], []
        for prompt in prompts:
            for seed in seeds:
                frames = pipe(prompt.text, seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                              free_u=free_u, progress=False)[0]  # fmt: skip
                differences.append(float(np.abs(frames - off.setdefault((prompt.text, seed), frames)).mean()))
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
                steady.append(consistency(t))
                contrasts.append(contrast(frames))
        print(f"| {label} | {moved}/{clips} | {coloured}/{clips} | {np.mean(steady):.3f} | {np.mean(differences):.4f} "
              f"| {np.mean(contrasts):.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""FreeU (`free_u`) on the embedded world: off; in diffusers' form (`enable_freeu`) at diffusers' SD1.5 values and
at ComfyUI's FreeU_V2 defaults; in ComfyUI's FreeU and FreeU_V2 forms at their defaults. The world's UNet is two
blocks wide (64, 128): ComfyUI's forms find no backbone of 4 × 64 and touch the 128-wide joins with b2, s2 only.

Counted per row, over clips of the evaluation prompts: clips moving as captioned (`world.metrics.motion_correct`),
clips of the captioned colour (`colour_correct`), the mean temporal consistency (`consistency`: steady area, colour
and path), the mean absolute difference of its frames from the same clip (prompt and seed) without FreeU, and the
object's mean contrast with the background (the distance of the object's mean colour from the median of the frame's
border).

    python benchmarks/world_free_u.py           # 5 rows × 16 clips: about ten minutes on 2 CPU cores
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
    rows = {"off": None, "diffusers: 1.5, 1.6, 0.9, 0.2 (diffusers' SD1.5)": FreeU(1.5, 1.6, 0.9, 0.2),
            "diffusers: 1.3, 1.4, 0.9, 0.2": FreeU(1.3, 1.4, 0.9, 0.2),
            "comfy: 1.1, 1.2, 0.9, 0.2 (its defaults)": FreeU(1.1, 1.2, 0.9, 0.2, "comfy"),
            "comfy-v2: 1.3, 1.4, 0.9, 0.2 (its defaults)": FreeU(1.3, 1.4, 0.9, 0.2, "comfy-v2")}  # fmt: skip
    clips = len(prompts) * len(seeds)
    print(f"\n## FreeU on the embedded world ({clips} clips a row: {len(prompts)} prompts × {len(seeds)} seeds, "
          f"{args.frames} frames, {args.steps} DDIM steps)\n")  # fmt: skip
    print(
        "| FreeU: form, b1, b2, s1, s2 | moves as captioned | captioned colour | consistency | difference from off "
        "| contrast |"
    )
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

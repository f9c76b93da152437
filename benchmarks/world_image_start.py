"""A start from a picture (`ImageStart`, the A1111 AnimateDiff extension's img2vid) on the embedded world: does the
clip begin at the picture and still move as captioned?

For each evaluation prompt and seed the picture is the first frame of the same prompt's clip at another seed (seed
+ 100), so that it differs from what the seed draws by itself. Counted per row: clips whose first frame matches the
picture (its mean absolute difference from the picture under half of the plain clip's), the mean of that difference,
clips moving as captioned (`world.metrics.motion_correct`) and of the captioned colour (`colour_correct`).

    python benchmarks/world_image_start.py           # 5 rows × 16 clips: several minutes on 2 CPU cores
"""

from __future__ import annotations

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline import ImageStart
from animatediff.world.metrics import colour_correct, motion_correct, track

ROWS = {  # label: (strength, latent scale); latent power 1
    "no picture (text to video)": None,
    "strength 0.75, scale 32 (the extension's defaults)": (0.75, 32.0),
    "strength 0.75, scale 8": (0.75, 8.0),
    "strength 0.9, scale 8": (0.9, 8.0),
    "strength 0.9, scale 4": (0.9, 4.0),
}


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    call = dict(num_frames=args.frames, num_inference_steps=args.steps, progress=False)
    pictures = {(p.text, s): pipe(p.text, seed=s + 100, **call)[0][0] for p in prompts for s in seeds}
    plain = {(p.text, s): pipe(p.text, seed=s, **call)[0] for p in prompts for s in seeds}
    print(f"\n## A start from a picture on the embedded world ({clips} clips a row: {len(prompts)} prompts × "
          f"{len(seeds)} seeds, {args.frames} frames, {args.steps} DDIM steps)\n")  # fmt: skip
    print("| start | first frame matches the picture | its difference from the picture | moves as captioned "
          "| captioned colour |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, row in ROWS.items():
        matched, moved, coloured, differences = 0, 0, 0, []
        for prompt in prompts:
            for seed in seeds:
                picture = pictures[(prompt.text, seed)]
                frames = plain[(prompt.text, seed)]
                if row is not None:
                    start = ImageStart(picture, scale=row[1])
                    frames = pipe(prompt.text, seed=seed, video=start, strength=row[0], **call)[0]
                difference = float(np.abs(frames[0] - picture).mean())
                differences.append(difference)
                matched += difference < 0.5 * float(np.abs(plain[(prompt.text, seed)][0] - picture).mean())
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
        print(f"| {label} | {matched}/{clips} | {np.mean(differences):.4f} | {moved}/{clips} | {coloured}/{clips} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

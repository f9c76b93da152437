"""A start from a picture (`ImageStart`, the A1111 AnimateDiff extension's img2vid) on the embedded world: does the
clip begin where the picture is, and does it then move as its prompt says?

For each evaluation prompt and seed the picture is the first frame of the plain clip (text to video, same seed)
mirrored left to right: a frame of the world whose object stands elsewhere. Counted per row, where the mirror moves the
object by more than 0.1 of the frame's width: clips whose first frame has its object nearer the picture's (by the
centre's x, `world.metrics.track`) than half the plain clip's distance, and the mean distance; over all clips: clips
moving as their prompt says (`motion_correct`) and clips of the prompt's colour (`colour_correct`).

    python benchmarks/world_image_start.py           # 5 rows × 16 clips: several minutes on 2 CPU cores
"""

from __future__ import annotations

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline import ImageStart
from animatediff.world.metrics import colour_correct, motion_correct, track

ROWS = {  # label: (strength, latent scale); latent power 1
    "no picture (text to video)": None,
    "strength 0.5, scale 32": (0.5, 32.0),
    "strength 0.5, scale 8": (0.5, 8.0),
    "strength 0.75, scale 32 (the extension's defaults)": (0.75, 32.0),
    "strength 0.9, scale 8": (0.9, 8.0),
}


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    call = dict(num_frames=args.frames, num_inference_steps=args.steps, progress=False)
    plain = {(p.text, s): pipe(p.text, seed=s, **call)[0] for p in prompts for s in seeds}
    pictures = {key: clip[0][:, ::-1].copy() for key, clip in plain.items()}
    x = {key: track(picture[None]).x[0] for key, picture in pictures.items()}
    moved_away = [key for key in plain if abs(track(plain[key]).x[0] - x[key]) > 0.1]
    print(f"\n## A start from a picture on the embedded world ({clips} clips a row: {len(prompts)} prompts × "
          f"{len(seeds)} seeds, {args.frames} frames, {args.steps} DDIM steps; {len(moved_away)} with the object "
          "moved by the mirror)\n")  # fmt: skip
    print("| start | first frame's object at the picture's | its distance from the picture's | moves as captioned "
          "| captioned colour |")  # fmt: skip
    print("|---|---|---|---|---|")
    for label, row in ROWS.items():
        matched, moved, coloured, distances = 0, 0, 0, []
        for prompt in prompts:
            for seed in seeds:
                key = (prompt.text, seed)
                frames = plain[key]
                if row is not None:
                    frames = pipe(prompt.text, seed=seed, video=ImageStart(pictures[key], scale=row[1]),
                                  strength=row[0], **call)[0]  # fmt: skip
                t = track(frames)
                if key in moved_away:
                    distances.append(abs(t.x[0] - x[key]))
                    matched += distances[-1] < 0.5 * abs(track(plain[key]).x[0] - x[key])
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
        print(f"| {label} | {matched}/{len(moved_away)} | {np.mean(distances):.3f} | {moved}/{clips} | "
              f"{coloured}/{clips} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""Video inpainting (`video_mask`) on the embedded world: rendered clips of a red circle moving up or down in the left
half of a blue background, drawn again by video-to-video as "a green circle moving <the same way> on a blue
background", with the left half (the circle's) masked white (drawn anew) or without a mask.

Counted per row: the clips whose right half is kept (mean absolute difference from the input's right half under 0.03
of the range; the world VAE's own round trip is 0.012), whose circle reads green (`world.metrics`, the tracked
object's colour) and whose circle still moves the input's way.

    python benchmarks/world_video_mask.py              # 4 rows × 8 clips: about three minutes on 2 CPU cores
    python benchmarks/world_video_mask.py --seeds 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from world_setup import embedded_pipeline

from animatediff.world.metrics import colour_correct, motion_correct, track
from animatediff.world.render import render_video
from animatediff.world.scenes import SceneSpec

FRAMES, SIZE = 16, 32
STARTS = {"up": 0.7, "down": 0.3}
"""Where each motion's circle starts (y), so that it travels 0.3 of the side and stays in the frame."""


def input_clip(motion: str, x: float) -> np.ndarray:
    """A red circle on blue at `x` (in the left half) moving `motion`, float (16, 32, 32, 3) in [0, 1]."""
    spec = SceneSpec("circle", "red", "blue", motion=motion, amount=0.3, x=x, y=STARTS[motion], size=0.12)
    return render_video(spec, FRAMES, SIZE).frames.astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per input clip (0, 1, …)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (the strength runs its share of them)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    inputs = [(motion, x) for motion in STARTS for x in (0.2, 0.3)]
    clips = len(inputs) * args.seeds
    mask = np.zeros((SIZE, SIZE))
    mask[:, : SIZE // 2] = 1
    print("\n## Video inpainting (video_mask), on the embedded world\n")
    print(f"{clips} clips per row ({len(inputs)} input clips × {args.seeds} seeds), {FRAMES} frames, {SIZE} px, "
          f"{args.steps} DDIM steps; prompt 'a green circle moving <its way> on a blue background'. "
          f"{args.threads} CPU threads.\n")  # fmt: skip
    print("| strength | mask | right half kept | circle green | moves as the input | s/clip |")
    print("|---|---|---|---|---|---|")
    for strength in (0.8, 1.0):
        for masked in (False, True):
            kept = green = moved = 0
            start = time.perf_counter()
            for motion, x in inputs:
                video = input_clip(motion, x)
                for seed in range(args.seeds):
                    frames = pipe(f"a green circle moving {motion} on a blue background", video=video,
                                  strength=strength, video_mask=mask if masked else None, num_frames=FRAMES,
                                  height=SIZE, width=SIZE, num_inference_steps=args.steps, seed=seed,
                                  progress=False)[0]  # fmt: skip
                    kept += np.abs(frames[:, :, SIZE // 2 :] - video[:, :, SIZE // 2 :]).mean() < 0.03
                    t = track(frames)
                    green += colour_correct(t, "green")
                    moved += motion_correct(t, motion)
            seconds = (time.perf_counter() - start) / clips
            label = "left half" if masked else "none"
            print(f"| {strength} | {label} | {kept}/{clips} | {green}/{clips} | {moved}/{clips} | {seconds:.1f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

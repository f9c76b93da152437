"""An IP-Adapter's mask on the embedded world: the image prompt's colour taken only where the mask is white.

The IP-Adapter is the one `world_ip_adapter.py` trains (run it first). The prompt asks for a circle moving right
('a circle moving right on a black background', no colour named), so the object crosses from the left half of the
frame into the right; the image prompt is a close-up of a circle of a given colour. Counted as `world eval` counts
(`world.metrics`) over the first four frames and the last four: clips whose object has the image's colour there, and
where the object is (its mean x, 0 the left edge, 1 the right), with no image prompt, the image everywhere, and the
image masked to the right half and to the left half. And how much each clip changed from the same clip without an
image prompt in the right half and in the left (mean absolute difference), with the clips changed more in the
masked half than in the other.

    python benchmarks/world_ip_masks.py                    # 15 clips a row (5 colours × 3 seeds), 25 steps
"""

from __future__ import annotations

import time

import numpy as np
from world_ip_adapter import colour_close_ups, trained_adapter, trained_adapter_options

from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.world.metrics import colour_correct, motion_correct, track

SIZE = 32
"""The world's frame size."""
RIGHT = np.zeros((SIZE, SIZE))
RIGHT[:, SIZE // 2 :] = 1.0
ROWS = {"none": None, "everywhere": False, "masked to the right half": RIGHT, "masked to the left half": 1 - RIGHT}
"""Row label → the image prompt's mask (None: no image prompt; False: no mask)."""


def main() -> None:
    args = trained_adapter_options(__doc__.splitlines()[0]).parse_args()
    pipe, weights = trained_adapter(args)
    clips = colour_close_ups(args.seeds)
    n = len(clips)
    print(f"\n## An IP-Adapter's mask on the world ({args.sample_steps} DDIM steps, {n} clips a row; the object "
          "crosses from the left half to the right; prompts name no colour)\n")  # fmt: skip
    print("| image prompt | first 4 frames of the image's colour | last 4 frames of the image's colour | moving as "
          "captioned | mean x, first 4 / last 4 frames | change, right / left half | changed more in the mask | "
          "s per clip |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    plain = {}
    for label, mask in ROWS.items():
        first = last = moved = inside = 0
        xs, changes = [], []
        start = time.perf_counter()
        for colour, image, seed in clips:
            ip = None if mask is None else IPAdapter(weights, image, mask=None if mask is False else mask)
            frames = pipe("a circle moving right on a black background", seed=seed,
                          num_inference_steps=args.sample_steps, progress=False, ip_adapter=ip)[0]  # fmt: skip
            tracked = track(frames)
            first += colour_correct(track(frames[:4]), colour)
            last += colour_correct(track(frames[-4:]), colour)
            moved += motion_correct(tracked, "right")
            xs.append((tracked.x[:4].mean(), tracked.x[-4:].mean()))
            if mask is None:
                plain[colour, seed] = frames
            change = np.abs(frames - plain[colour, seed]).mean(axis=(0, 1, 3))  # per column
            right, left = change[SIZE // 2 :].mean(), change[: SIZE // 2].mean()
            changes.append((right, left))
            if isinstance(mask, np.ndarray):
                inside += (right > left) == bool(mask[0, -1])
        seconds = (time.perf_counter() - start) / n
        x_first, x_last = np.mean(xs, axis=0)
        right, left = np.mean(changes, axis=0)
        masked = f"{inside}/{n}" if isinstance(mask, np.ndarray) else "–"
        print(f"| {label} | {first}/{n} | {last}/{n} | {moved}/{n} | {x_first:.2f} / {x_last:.2f} | {right:.3f} / "
              f"{left:.3f} | {masked} | {seconds:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

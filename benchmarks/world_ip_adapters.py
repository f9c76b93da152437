"""Two IP-Adapters at once on the embedded world: two image prompts of different colours, each through its own
IP-Adapter, their scales weighing them.

The IP-Adapter is the one `world_ip_adapter.py` trains (run it first, or `--steps 0` of it measures an existing
run), loaded twice: the image prompts are close-ups of a circle of colour A and of colour B (B two colours on from A
in the world's list), the prompts naming no colour ('a circle moving right on a black background'). Counted as
`world eval` counts (`world.metrics`): clips of A's colour, of B's colour, and clips moving as captioned, for no
image prompt, each image alone at scale 1, both at once with A's scale from 0 to 1.5 and B's from 1.5 down (a
scale of 0 must draw what the other alone draws), and both at 1; with `--rows sums`, the two scales summing to 1,
and one image alone at 1.5.

    python benchmarks/world_ip_adapters.py                  # 15 clips a row (5 colours × 3 seeds), 25 steps
    python benchmarks/world_ip_adapters.py --rows sums
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from world_ip_adapter import still, trained_adapter, trained_adapter_options

from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.world.metrics import colour_correct, motion_correct, track
from animatediff.world.scenes import BASE_WORLD

ROWS = {
    "none": None,
    "A alone, 1": (1.0, None),
    "B alone, 1": (None, 1.0),
    "A 1, B 0": (1.0, 0.0),
    "A 0, B 1": (0.0, 1.0),
    "A 1.5, B 0.5": (1.5, 0.5),
    "A 1, B 1": (1.0, 1.0),
    "A 0.5, B 1.5": (0.5, 1.5),
}
"""Row label → (A's scale, B's scale), None where that image prompt is not given."""
SUMS = {
    "A alone, 1.5": (1.5, None),
    "A 0.75, B 0.25": (0.75, 0.25),
    "A 0.5, B 0.5": (0.5, 0.5),
    "A 0.25, B 0.75": (0.25, 0.75),
}
"""`--rows sums`: the two scales summing to 1, and one image alone at 1.5, the largest scale of `ROWS`."""


def adapters(weights: Path, images: tuple[Image.Image, Image.Image], scales: tuple | None) -> list[IPAdapter]:
    if scales is None:
        return []
    return [IPAdapter(weights, image, s) for image, s in zip(images, scales, strict=True) if s is not None]


def main() -> None:
    parser = trained_adapter_options(__doc__.splitlines()[0])
    parser.add_argument("--rows", choices=("scales", "sums"), default="scales", help="the rows (ROWS or SUMS)")
    args = parser.parse_args()
    rows = ROWS if args.rows == "scales" else SUMS
    pipe, weights = trained_adapter(args)
    colours = list(BASE_WORLD.colours)
    rng = np.random.default_rng(123)
    clips = []
    for i, colour_a in enumerate(colours):
        colour_b = colours[(i + 2) % len(colours)]
        close_ups = tuple(still(rng, colour=c, shape="circle", background="black")[2] for c in (colour_a, colour_b))
        for seed in range(args.seeds):
            clips.append((colour_a, colour_b, tuple(Image.fromarray(c) for c in close_ups), seed))
    n = len(clips)
    print(f"\n## Two IP-Adapters at once on the world ({args.sample_steps} DDIM steps, {n} clips a row; prompts "
          "name no colour)\n")  # fmt: skip
    print("| image prompts (scales) | clips of A's colour | clips of B's colour | moving as captioned | s per clip |")
    print("|---|---|---|---|---|")
    drawn = {}
    for label, scales in rows.items():
        hits_a = hits_b = moved = 0
        start = time.perf_counter()
        for colour_a, colour_b, images, seed in clips:
            ip = adapters(weights, images, scales)
            frames = pipe("a circle moving right on a black background", seed=seed,
                          num_inference_steps=args.sample_steps, progress=False, ip_adapter=ip)[0]  # fmt: skip
            drawn[label, seed, colour_a] = frames
            tracked = track(frames)
            hits_a += colour_correct(tracked, colour_a)
            hits_b += colour_correct(tracked, colour_b)
            moved += motion_correct(tracked, "right")
        seconds = (time.perf_counter() - start) / n
        print(f"| {label} | {hits_a}/{n} | {hits_b}/{n} | {moved}/{n} | {seconds:.2f} |", flush=True)
    for zero, alone in (("A 1, B 0", "A alone, 1"), ("A 0, B 1", "B alone, 1")) if rows is ROWS else ():
        gap = max(float(np.abs(drawn[zero, s, a] - drawn[alone, s, a]).max()) for a, _, _, s in clips)
        print(f"\n{zero} against {alone}: largest difference {gap:.2e}")


if __name__ == "__main__":
    main()

"""A region's own image prompt on the embedded world: the IP-Adapter `world_ip_adapter.py` trains (run it first, or
point --run-dir at its run), the call's image of one colour and, over the right half, a region with the same prompt
and an image of another colour; prompts name no colour and the object moves right, from the left half into the right.

Counted, as `world eval` counts (`world.metrics`): clips whose first four frames take the call's image's colour and
whose last four take the region's, against the call's image alone and against the region without an image of its
own (which then takes the call's).

    python benchmarks/world_region_ip.py --run-dir runs/world-ip-adapter     # 3 rows × 15 clips, a few minutes
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from world_ip_adapter import still
from world_setup import embedded_pipeline, trained_options

from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.pipeline.regions import Region
from animatediff.world.metrics import colour_correct, motion_correct, track
from animatediff.world.scenes import BASE_WORLD


def main() -> None:
    parser = trained_options(__doc__.splitlines()[0], "runs/world-ip-adapter", 0, 3, 25, "image prompt's scale")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    weights = Path(args.run_dir) / "ip_adapter.safetensors"
    rng = np.random.default_rng(123)
    colours = list(BASE_WORLD.colours)
    clips = [(colours[i % len(colours)], colours[(i + 2) % len(colours)], seed) for i in range(len(colours))
             for seed in range(args.seeds)]  # fmt: skip
    right = np.zeros((32, 32))
    right[:, 16:] = 1
    prompt = "a circle moving right on a black background"
    print(f"\n## A region's own image prompt on the world (scale {args.scale}, {args.sample_steps} DDIM steps, "
          f"{len(clips)} clips a row; prompts name no colour)\n")  # fmt: skip
    print("| row | first 4 frames of the call's image's colour | last 4 frames of the region's image's colour | "
          "moving as captioned |")  # fmt: skip
    print("|---|---|---|---|")
    for label in ("the call's image alone", "region, the call's image", "region with its own image"):
        first = last = moved = 0
        for colour_a, colour_b, seed in clips:
            image_a = Image.fromarray(still(rng, colour=colour_a, shape="circle", background="black")[2])
            image_b = Image.fromarray(still(rng, colour=colour_b, shape="circle", background="black")[2])
            regions = [] if label.endswith("alone") else [Region(prompt, right, ip_image=image_b if "own" in label
                                                                 else None)]  # fmt: skip
            frames = pipe(prompt, seed=seed, num_inference_steps=args.sample_steps, progress=False, regions=regions,
                          ip_adapter=IPAdapter(weights, image_a, args.scale))[0]  # fmt: skip
            first += colour_correct(track(frames[:4]), colour_a)
            last += colour_correct(track(frames[-4:]), colour_b)
            moved += motion_correct(track(frames), "right")
        n = len(clips)
        print(f"| {label} | {first}/{n} | {last}/{n} | {moved}/{n} |", flush=True)


if __name__ == "__main__":
    main()

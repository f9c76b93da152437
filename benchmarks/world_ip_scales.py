"""An IP-Adapter's scale per UNet block on the embedded world: where in the UNet the image prompt's colour is taken.

The IP-Adapter is the one `world_ip_adapter.py` trains (run it first). The world's UNet has image attention in its
down block 0 (one transformer), its middle block (one) and its up block 1 (two). The image prompt is a close-up of a
circle of a given colour, the prompts naming no colour ('a circle moving right on a black background'); counted as
`world eval` counts (`world.metrics`): clips of the image's colour, and clips moving as captioned, for no image
prompt, scale 1 everywhere, and scale 1 in one part only (layer-wise, the rest at 0).

    python benchmarks/world_ip_scales.py                   # 15 clips a row (5 colours × 3 seeds), 25 steps
"""

from __future__ import annotations

import time

from world_ip_adapter import colour_close_ups, trained_adapter, trained_adapter_options

from animatediff.pipeline.ip_adapter import IPAdapter
from animatediff.world.metrics import colour_correct, motion_correct, track

ROWS = {
    "none": None,
    "1 everywhere": 1.0,
    "down block 0 only": {"down": 1.0},
    "middle only": {"mid": 1.0},
    "up block 1 only": {"up": 1.0},
    "up block 1, first transformer only": {"up": {"block_1": [1.0, 0.0]}},
    "up block 1, second transformer only": {"up": {"block_1": [0.0, 1.0]}},
}
"""Row label → the IP-Adapter's scale (None: no image prompt)."""


def main() -> None:
    args = trained_adapter_options(__doc__.splitlines()[0]).parse_args()
    pipe, weights = trained_adapter(args)
    clips = colour_close_ups(args.seeds)
    n = len(clips)
    print(f"\n## An IP-Adapter's scale per UNet block on the world ({args.sample_steps} DDIM steps, {n} clips a row; "
          "prompts name no colour)\n")  # fmt: skip
    print("| scale | clips of the image's colour | moving as captioned | s per clip |")
    print("|---|---|---|---|")
    for label, scale in ROWS.items():
        hits = moved = 0
        start = time.perf_counter()
        for colour, image, seed in clips:
            ip = None if scale is None else IPAdapter(weights, image, scale)
            frames = pipe("a circle moving right on a black background", seed=seed,
                          num_inference_steps=args.sample_steps, progress=False, ip_adapter=ip)[0]  # fmt: skip
            tracked = track(frames)
            hits += colour_correct(tracked, colour)
            moved += motion_correct(tracked, "right")
        seconds = (time.perf_counter() - start) / n
        print(f"| {label} | {hits}/{n} | {moved}/{n} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()

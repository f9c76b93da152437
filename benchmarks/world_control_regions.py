"""A ControlNet confined to regions (prompt-travel's control_region_list) on the embedded world: does it steer where
it is asked to and nowhere else?

The world ControlNet of `benchmarks/world_controlnet.py` (trained on Canny edges; train it first there, into the
same --run-dir) steers 16-frame clips of a red circle on blue from the edges of a rendered clip moving one way; the
prompt names no motion, so the control is the only say in the motion. One region with the same prompt as the call
(so only where the ControlNet acts differs): over the whole frame, the ControlNet confined to it and confined to the
background (which the region then covers everywhere); over the band the circle moves along (the middle half of the
rows for left and right, of the columns for up and down), the ControlNet confined to it (acting along the path) and
confined to the background (acting off the path only). Rows for the ControlNet everywhere and for none. Per row: the
clips moving as the control does (`world.metrics`).

    python benchmarks/world_control_regions.py --run-dir runs/world-controlnet
"""

from __future__ import annotations

import time

import numpy as np
import torch
from world_controlnet import measuring_options, prompt, trained_controlnet
from world_video_to_video import FRAMES, SIZE, STARTS, input_clip

from animatediff.pipeline.annotators import canny
from animatediff.pipeline.controlnet import ControlNet
from animatediff.pipeline.regions import Region
from animatediff.world.metrics import motion_correct, track

ROWS = (
    ("everywhere (no regions)", None, None),
    ("region over the whole frame, confined to it", "whole", [0]),
    ("region over the whole frame, confined to the background", "whole", ["background"]),
    ("region over the band the circle moves along, confined to it", "band", [0]),
    ("region over the band the circle moves along, confined to the background", "band", ["background"]),
    ("none (the text alone)", None, ()),
)
"""(label, the region's mask, where the ControlNet acts: None everywhere, () no ControlNet)."""


def mask(kind: str, motion: str) -> np.ndarray:
    """The region's mask: the whole frame, or the band of it the circle moves along (the middle half)."""
    if kind == "whole":
        return np.ones((SIZE, SIZE))
    band = np.zeros((SIZE, SIZE))
    if motion in ("left", "right"):
        band[SIZE // 4 : 3 * SIZE // 4] = 1
    else:
        band[:, SIZE // 4 : 3 * SIZE // 4] = 1
    return band


def main() -> None:
    args = measuring_options(__doc__.splitlines()[0], seeds=2).parse_args()
    torch.set_num_threads(args.threads)
    pipe, model, exported = trained_controlnet(args.run_dir)
    print(f"\n## A ControlNet confined to regions on the embedded world ({exported})\n")
    print(f"{len(STARTS)} motions × {args.seeds} seeds, {FRAMES} frames, {args.sample_steps} DDIM steps; the prompt "
          "names no motion.\n")  # fmt: skip
    print("| ControlNet | moves as the control | s/clip |")
    print("|---|---|---|")
    for label, kind, acting in ROWS:
        followed = clips = 0
        start = time.perf_counter()
        for motion in STARTS:
            edges = canny(input_clip(motion))
            nets = [] if acting == () else [ControlNet(model, edges, regions=acting or ())]
            regions = [Region(prompt(None), mask(kind, motion))] if kind else []
            for seed in range(args.seeds):
                frames = pipe(prompt(None), num_frames=FRAMES, num_inference_steps=args.sample_steps, seed=seed,
                              progress=False, controlnets=nets, regions=regions)[0]  # fmt: skip
                followed += motion_correct(track(frames), motion)
                clips += 1
        seconds = (time.perf_counter() - start) / clips
        print(f"| {label} | {followed} of {clips} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Seconds per step of regional prompts with the parts sharing one unconditional prediction (1 + parts UNet passes a
step) against each part its own guided batch (2 × parts), on `pipeline_benchmark.py`'s random SD-shaped model.

Both ways run in one process, alternated order-balanced (shared, separate, separate, shared, …); the best run of
each is kept, and the largest frame difference between them is printed (they draw the same frames).

    python benchmarks/region_sharing_benchmark.py                  # two regions, preset mid, 2 threads
    python benchmarks/region_sharing_benchmark.py --regions 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_benchmark import PRESETS, build, ours_pipeline, tokenizer  # noqa: E402 - shared


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mid", choices=sorted(PRESETS))
    parser.add_argument("--regions", type=int, default=2, choices=[1, 2], help="regions over the background")
    parser.add_argument("--steps", type=int, default=4, help="steps per run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    import animatediff.pipeline.animation as animation
    from animatediff.pipeline.regions import Region

    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    unet, motion, vae, text, _ = build(preset)
    pipe = ours_pipeline(tokenizer(tempfile.mkdtemp()), text, vae, unet, motion, "cpu", torch.float32)
    size = preset["size"]
    left, top = np.zeros((size, size)), np.zeros((size, size))
    left[:, : size // 2] = 1
    top[: size // 2] = 1
    regions = [Region("a blue square", left), Region("a green cross", top)][: args.regions]
    shares = animation.shares_unconditional

    def run(shared: bool, steps: int) -> tuple[float, np.ndarray]:
        animation.shares_unconditional = shares if shared else (lambda *_: False)
        stamps: list[float] = []
        frames = pipe("a red circle", "blurry", regions=regions, num_frames=preset["frames"], height=size, width=size,
                      num_inference_steps=steps, seed=0, progress=False,
                      callback=lambda *_: stamps.append(time.perf_counter()))  # fmt: skip
        return statistics.median(b - a for a, b in zip(stamps, stamps[1:])), frames

    run(True, 2)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    frames = {}
    for shared in [True, False, False, True] * ((args.rounds + 1) // 2):
        if len(times[shared]) < args.rounds:
            seconds, frames[shared] = run(shared, args.steps)
            times[shared].append(seconds)
    a, b = min(times[True]), min(times[False])
    print(f"{args.regions} region(s), preset {args.preset}, {args.threads} threads: shared {a:.3f} s/step, separate "
          f"{b:.3f} s/step, ratio {a / b:.2f}; runs {[round(t, 3) for t in times[True]]} against "
          f"{[round(t, 3) for t in times[False]]}; largest frame difference "
          f"{np.abs(frames[True] - frames[False]).max():.1e}")  # fmt: skip
    animation.shares_unconditional = shares


if __name__ == "__main__":
    main()

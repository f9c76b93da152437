"""Where a world build's motion-stage step goes on this machine, and what rendering costs in it.

Prints, for 16-frame 32×32 clips of the base world: milliseconds to render one clip with the package's renderer
(each layer blended inside its bounding box) against the whole-canvas blend it replaced (the reference in
`tests/test_world_scenes.py`, which it equals bit for bit); then seconds per motion-stage step of the default
recipe over the embedded base (8 clips: render, VAE-encode, UNet forward and backward, AdamW), rendering in the
training process against one DataLoader worker rendering the next batch, with the loss of every step, which must
agree. The two ways alternate rep by rep, so load from other processes hits both alike.

    python benchmarks/world_build_benchmark.py [--clips 24] [--steps 10] [--reps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_world_scenes import whole_canvas_frame  # noqa: E402 - the reference lives with the test that holds it

import animatediff.world.build as build  # noqa: E402
from animatediff.world.datasets import WorldVideos  # noqa: E402
from animatediff.world.layout import EMBEDDED  # noqa: E402
from animatediff.world.render import render_video  # noqa: E402


def render_ms(clips: int) -> tuple[float, float]:
    """Median milliseconds per clip: (package renderer, whole-canvas reference)."""
    dataset = WorldVideos(clips, seed=3)
    ours, reference = [], []
    for i in range(clips):
        spec = dataset.spec(i)
        begin = time.perf_counter()
        render_video(spec, 16, 32)
        ours.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        for k in range(16):
            whole_canvas_frame(spec, k / 15, 32)
        reference.append(time.perf_counter() - begin)
    return 1000 * statistics.median(ours), 1000 * statistics.median(reference)


def step_seconds(workers: int, steps: int, run_dir: Path) -> tuple[float, list[float]]:
    """Median seconds per motion-stage step after two warm-up steps, and the losses of all steps."""
    from animatediff.train.trainer import Trainer

    build.rendering_workers = lambda: workers
    config, clips = build.motion_module_run(EMBEDDED / "base", run_dir, build.MotionStage(), progress=False)
    config.checkpoint.every = 0
    trainer = Trainer(config, dataset=clips)
    batches = iter(trainer.loader.epoch(0, 0))
    times, losses = [], []
    for _ in range(steps + 2):
        begin = time.perf_counter()
        losses.append(float(trainer.micro_step(next(batches))))
        times.append(time.perf_counter() - begin)
    return statistics.median(times[2:]), losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="clips rendered each way")
    parser.add_argument("--steps", type=int, default=10, help="timed motion-stage steps per run")
    parser.add_argument("--reps", type=int, default=2, help="runs of each way, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the world recipe's default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours, reference = render_ms(args.clips)
    print(f"render a 16-frame clip: {ours:.1f} ms, whole-canvas blend {reference:.1f} ms ({reference / ours:.2f}×)")

    seconds: dict[int, list[float]] = {0: [], 1: []}
    losses: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for workers in (0, 1):
                s, run_losses = step_seconds(workers, args.steps, Path(tmp) / f"{workers}-{rep}")
                seconds[workers].append(s)
                losses[workers] = run_losses
    inline, worker = statistics.median(seconds[0]), statistics.median(seconds[1])
    print(f"motion-stage step (8 clips): rendering in the training process {inline:.2f} s, in a worker {worker:.2f} s")
    print(f"  ratio {inline / worker:.2f}×; losses equal step for step: {losses[0] == losses[1]}")
    before = inline + 8 * (reference - ours) / 1000  # the whole-canvas renderer, in the training process
    print(f"  with the whole-canvas renderer in the training process (8 clips' extra render time): {before:.2f} s")
    print(f"  1,500 steps: {1500 * before / 60:.1f} → {1500 * inline / 60:.1f} → {1500 * worker / 60:.1f} min")


if __name__ == "__main__":
    main()

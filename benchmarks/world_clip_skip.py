"""Clip skip measured on the embedded world: the same prompts and seeds with the text taken from the layer the world's
base was trained on (clip skip 1) and from the one before it (clip skip 2, `--clip-skip 2`).

Each row is measured as `animatediff world eval` measures (`world.metrics`): motion accuracy (the tracked centroid
or area moves as captioned), temporal consistency and colour accuracy, over `world.evaluate.evaluation_prompts`
(colours, shapes and backgrounds of the base world, cycling through the measured motions). The world's text encoder
has two layers and its base was trained on the last one, as SD1.5 was: the second row shows how much of a prompt
an earlier layer still carries for such a base (anime models trained on the penultimate layer are the other case).

    python benchmarks/world_clip_skip.py                  # 2 rows × 16 clips: a few minutes on 2 CPU cores
    python benchmarks/world_clip_skip.py --prompts 6 --seeds 1
"""

from __future__ import annotations

import argparse
import time

import torch

from animatediff.pipeline import AnimationPipeline
from animatediff.world.evaluate import evaluate_row, evaluation_prompts
from animatediff.world.layout import EMBEDDED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="evaluation prompts (the motions in turn)")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per prompt (0, 1, …)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    prompts = evaluation_prompts(args.prompts)
    seeds = list(range(args.seeds))
    clips = len(prompts) * len(seeds)

    print("\n## Clip skip on the embedded world\n")
    shape = f"{len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames of 32×32"
    print(f"{clips} clips per row ({shape}, {args.steps} steps, {args.threads} CPU threads.\n")
    print("| clip skip | text from | motion accuracy | consistency | colour accuracy | s/clip |")
    print("|---|---|---|---|---|---|")
    layers = pipe.text_encoder.config.num_hidden_layers

    def of(accuracy: float) -> str:
        return f"{round(accuracy * clips)}/{clips}"

    for clip_skip in (1, 2):

        def generate(prompt: str, seed: int, clip_skip: int = clip_skip):  # noqa: ANN202
            call = dict(num_frames=args.frames, num_inference_steps=args.steps, clip_skip=clip_skip, progress=False)
            return pipe(prompt, seed=seed, **call)[0]

        start = time.perf_counter()
        result = evaluate_row(f"clip skip {clip_skip}", generate, prompts, seeds)
        seconds = (time.perf_counter() - start) / clips
        print(
            f"| {clip_skip} | layer {layers - clip_skip + 1} of {layers} | {of(result.motion_accuracy)} | "
            f"{result.consistency:.2f} | {of(result.colour_accuracy)} | {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

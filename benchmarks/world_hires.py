"""The hires fix (`--hires-scale`) on the embedded world: a clip drawn at the world's 32 px, then its frames upscaled
and drawn again at 48 or 64 px by video-to-video, against the same prompts drawn directly at those sizes (which the
world, trained at 32 px, never saw).

Counted per row, as `animatediff world eval` measures (`world.metrics`): the clips moving as captioned and of the
captioned colour, the mean consistency of the tracked object, and for the hires rows the clips whose second pass
moves the way its own first pass moved.

    python benchmarks/world_hires.py                 # 5 rows × 16 clips: about ten minutes on 2 CPU cores
    python benchmarks/world_hires.py --prompts 4 --seeds 1 --strength 0.6
    python benchmarks/world_hires.py --upscaler latent --hires-only   # A1111's Latent upscaler, the hires rows alone
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline.hires import HiresFix, hires_fix
from animatediff.world.metrics import colour_correct, consistency, displacement, motion_correct, track


def same_way(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two clips' tracked objects travel the same way (their net displacements point within 45°)."""
    a, b = np.array(displacement(track(first))), np.array(displacement(track(second)))
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return bool(norms > 0 and a @ b / norms > np.cos(np.pi / 4))


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=0.5, help="the second pass's strength")
    parser.add_argument("--upscaler", default="pixel", help="the hires rows' upscaler (pipeline.hires.UPSCALERS)")
    parser.add_argument("--hires-only", action="store_true", help="skip the rows drawn directly")
    args = parser.parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips = len(prompts) * len(seeds)
    print("\n## The hires fix (--hires-scale), on the embedded world\n")
    print(f"{clips} clips per row ({len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames, {args.steps} "
          f"DDIM steps; the hires rows' second pass at strength {args.strength} runs "
          f"{int(args.steps * args.strength)} of them. {args.threads} CPU threads.\n")  # fmt: skip
    print("| row | size | moves as captioned | captioned colour | consistency (mean) | moves as its first pass "
          "| s/clip |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    rows = [] if args.hires_only else [("drawn directly", size, None) for size in (32, 48, 64)]
    rows += [(f"hires fix ({args.upscaler}) from 32 px", size, size / 32) for size in (48, 64)]
    for label, size, scale in rows:
        moved = coloured = kept = 0
        scores = []
        start = time.perf_counter()
        for prompt in prompts:
            for seed in seeds:
                call = dict(num_frames=args.frames, num_inference_steps=args.steps, progress=False)
                hires = None if scale is None else HiresFix(scale, args.strength, upscaler=args.upscaler)
                latent = hires is not None and hires.latent  # the first pass's latents are upscaled
                side = size if scale is None else 32
                drawn = pipe(prompt.text, seed=seed, height=side, width=side, output_type="latent" if latent else "np",
                             **call)  # fmt: skip
                first = pipe.decode(drawn) if latent else drawn
                frames = first[0]
                if hires is not None:
                    frames = hires_fix(pipe, drawn, hires, prompt.text, seed=seed, **call)[0]
                    kept += same_way(first[0], frames)
                t = track(frames)
                moved += motion_correct(t, prompt.motion)
                coloured += colour_correct(t, prompt.colour)
                scores.append(consistency(t))
        seconds = (time.perf_counter() - start) / clips
        first_way = "–" if scale is None else f"{kept}/{clips}"
        print(f"| {label} | {size} px | {moved}/{clips} | {coloured}/{clips} | {np.mean(scores):.2f} | {first_way} | "
              f"{seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

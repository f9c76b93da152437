"""A1111's prompt editing (`--prompt-editing`) on the embedded world: which text wins when the text switches
during sampling.

Each clip's prompt is `[A:B:when]`, A an evaluation caption and B the same caption with the opposite motion (left
and right, up and down, growing and shrinking) and another colour, so that every clip says which text set its motion
and which its colour. `when` runs from 0 (B from the first step) to 1.0 (A throughout); `[A|B]` alternates every
step. Counted per row, as `animatediff world eval` measures (`world.metrics`): the clips moving as A says and as B
says, and the clips of A's colour and of B's.

    python benchmarks/world_prompt_editing.py                 # 8 rows × 16 clips: a few minutes on 2 CPU cores
    python benchmarks/world_prompt_editing.py --prompts 6 --seeds 1
"""

from __future__ import annotations

import time
from dataclasses import replace

from world_setup import clip_options, embedded_pipeline

from animatediff.world.evaluate import evaluation_prompts
from animatediff.world.metrics import colour_correct, motion_correct, track
from animatediff.world.scenes import BASE_WORLD, OPPOSITE_MOTIONS

WHENS = ("0", "0.1", "0.2", "0.4", "0.6", "0.8", "1.0")
"""The switch points: 0 switches before the first step, a fraction with a decimal point of the steps."""


def main() -> None:
    args = clip_options(__doc__.splitlines()[0]).parse_args()
    pipe = embedded_pipeline(args.threads, quiet=True)
    pairs = []
    for a in evaluation_prompts(args.prompts):
        colours = [c for c in BASE_WORLD.colours if c not in (a.colour, a.background)]
        pairs.append((a, replace(a, motion=OPPOSITE_MOTIONS[a.motion], colour=colours[len(pairs) % len(colours)])))
    seeds = list(range(args.seeds))
    clips = len(pairs) * len(seeds)

    print("\n## Prompt editing (--prompt-editing), on the embedded world\n")
    print(f"{clips} clips per row ({len(pairs)} prompts × {len(seeds)} seeds), {args.frames} frames of 32×32, "
          f"{args.steps} steps (DDIM), {args.threads} CPU threads. A: the caption; B: the opposite motion and another "
          "colour.\n")  # fmt: skip
    print("| prompt | moves as A | moves as B | A's colour | B's colour | s/clip |")
    print("|---|---|---|---|---|---|")
    rows = [(f"[A:B:{when}]", lambda a, b, when=when: f"[{a}:{b}:{when}]") for when in WHENS]
    rows.append(("[A|B]", lambda a, b: f"[{a}|{b}]"))
    for label, write in rows:
        counts = [0, 0, 0, 0]
        start = time.perf_counter()
        for a, b in pairs:
            for seed in seeds:
                frames = pipe(
                    write(a.text, b.text), seed=seed, num_frames=args.frames, num_inference_steps=args.steps,
                    progress=False, prompt_editing=True,
                )[0]  # fmt: skip
                t = track(frames)
                hits = (motion_correct(t, a.motion), motion_correct(t, b.motion))
                hits += (colour_correct(t, a.colour), colour_correct(t, b.colour))
                counts = [c + int(h) for c, h in zip(counts, hits, strict=True)]
        seconds = (time.perf_counter() - start) / clips
        print(f"| {label} | " + " | ".join(f"{c}/{clips}" for c in counts) + f" | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()

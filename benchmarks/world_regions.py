"""Regional prompts (`regions=`, prompt-travel's `region_map`) on the embedded world: the caption drawn as the
background, and the same caption on another background colour drawn in a region (half the frame, or a half that
changes sides at the clip's middle).

Counted per row: the clips whose two halves each read as the background colour asked there (a half's median colour,
the nearer of the two backgrounds asked, in most of the frames counted; the row without a region is counted as if
the region were the right half), the clips whose halves both read as the caption's background, and the clips moving
as captioned.

    python benchmarks/world_regions.py                 # 4 rows × 16 clips: about eight minutes on 2 CPU cores
    python benchmarks/world_regions.py --prompts 4 --seeds 1
"""

from __future__ import annotations

import time

import numpy as np
from world_setup import clip_options, evaluation_clips

from animatediff.pipeline.regions import Region
from animatediff.world.evaluate import Prompt
from animatediff.world.metrics import motion_correct, track
from animatediff.world.scenes import BACKGROUNDS

CONTRAST = {"black": "white", "white": "black", "gray": "black", "blue": "white"}
"""The region's background for each caption's: far apart in colour."""


def half_colours(frames: np.ndarray, a: str, b: str) -> list[tuple[str, str]]:
    """Per frame, the (left, right) half's median colour read as the nearer of the backgrounds `a` and `b`."""
    names = [a, b]
    palette = np.array([BACKGROUNDS[a], BACKGROUNDS[b]], np.float32) / 255
    width = frames.shape[2]
    read = []
    for frame in frames:
        halves = (frame[:, : width // 2], frame[:, width // 2 :])
        medians = [np.median(h.reshape(-1, 3), axis=0) for h in halves]
        read.append(tuple(names[int(np.argmin(((palette - m) ** 2).sum(1)))] for m in medians))
    return read


def reads_as(colours: list[tuple[str, str]], left: str, right: str) -> bool:
    """Whether most of these frames read `left` on the left and `right` on the right."""
    return sum(c == (left, right) for c in colours) > len(colours) / 2


def half_mask(size: int, side: str) -> np.ndarray:
    """A size × size mask, white on the `side` half."""
    mask = np.zeros((size, size))
    columns = slice(0, size // 2) if side == "left" else slice(size // 2, size)
    mask[:, columns] = 1
    return mask


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0])
    args = parser.parse_args()
    pipe, prompts, seeds = evaluation_clips(args)
    clips, size, f, mid = len(prompts) * len(seeds), 32, args.frames, args.frames // 2
    print("\n## Regional prompts, on the embedded world\n")
    print(f"{clips} clips per row ({len(prompts)} prompts × {len(seeds)} seeds), {f} frames, {args.steps} DDIM "
          f"steps, {size} px; the region's caption is the clip's with the background {CONTRAST}. "
          f"{args.threads} CPU threads.\n")  # fmt: skip
    print("| region | halves as asked (frames 0–" f"{mid - 1}) | halves as asked (frames {mid}–{f - 1}) "
          "| no region's colours | moves as captioned | s/clip |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rows = [
        ("none", None),
        ("right half", {0: half_mask(size, "right")}),
        ("left half", {0: half_mask(size, "left")}),
        (f"right half, left from frame {mid}", {0: half_mask(size, "right"), mid: half_mask(size, "left")}),
    ]
    for label, mask in rows:
        first = second = plain = moved = 0
        start = time.perf_counter()
        for prompt in prompts:
            other = Prompt(prompt.colour, prompt.shape, prompt.motion, CONTRAST[prompt.background], prompt.texture)
            sides = {0: "right"} if mask is None else {k: "left" if m[0, 0] else "right" for k, m in mask.items()}
            for seed in seeds:
                regions = [] if mask is None else [Region(other.text, mask)]
                frames = pipe(prompt.text, seed=seed, height=size, width=size, num_frames=f, regions=regions,
                              num_inference_steps=args.steps, progress=False)[0]  # fmt: skip
                a, b = prompt.background, other.background
                colours = half_colours(frames, a, b)
                asked = [(b, a) if sides[max(k for k in sides if k <= i)] == "left" else (a, b) for i in range(f)]
                first += reads_as(colours[:mid], *asked[0])
                second += reads_as(colours[mid:], *asked[mid])
                plain += reads_as(colours, a, a)
                moved += motion_correct(track(frames), prompt.motion)
        seconds = (time.perf_counter() - start) / clips
        print(
            f"| {label} | {first}/{clips} | {second}/{clips} | {plain}/{clips} | {moved}/{clips} | {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

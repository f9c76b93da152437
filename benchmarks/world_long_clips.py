"""The long-clip features measured on the embedded world: prompt travel (and prompt-travel's prompt_fixed_ratio),
schedules, FreeNoise, FreeInit, loops, motion scale, and motion scale keyframed by step. Prints one table per
measurement; every clip's prompt and seed are fixed, so a rerun on the same machine prints the same figures.

    python benchmarks/world_long_clips.py                    # everything (about 40 minutes on a 2-core CPU)
    python benchmarks/world_long_clips.py --only travel scale
    python benchmarks/world_long_clips.py --only hold        # prompt_fixed_ratio 0 against 0.5
    python benchmarks/world_long_clips.py --only travel-loop # keyframes going round (prompt_travel_loop) or not
    python benchmarks/world_long_clips.py --only scale-steps # the motion modules on or off for part of the steps
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from animatediff.pipeline import AnimationPipeline, FreeNoise
from animatediff.pipeline.prompt_travel import held_keyframes
from animatediff.sampling import ContextSchedule, FreeInit
from animatediff.world.layout import EMBEDDED
from animatediff.world.metrics import consistency, displacement, motion_correct, track

SUBJECTS = (("red", "circle", "blue"), ("yellow", "square", "black"), ("green", "triangle", "white"))


def caption(subject: tuple[str, str, str], motion: str) -> str:
    colour, shape, background = subject
    words = f"moving {motion}" if motion in ("left", "right", "up", "down") else motion
    return f"a {colour} {shape} {words} on a {background} background"


def segments_correct(frames: np.ndarray, motion: str, length: int = 16) -> list[bool]:
    """Whether each consecutive `length`-frame stretch of a clip moves the captioned way."""
    return [motion_correct(track(frames[s : s + length]), motion) for s in range(0, len(frames) - length + 1, length)]


def step_sizes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute pixel change between consecutive frames."""
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def travel(pipe: AnimationPipeline, steps: int) -> None:
    """Prompt travel right → up over 32 frames (keyframes 0 and 16, windows of 16): does the first half go right
    and the second up? Against the plain 'moving right' prompt as the control."""
    print("\n## Prompt travel: 'moving right' at frame 0 → 'moving up' at frame 16, 32 frames, windows 16/4\n")
    print("| prompt | interpolation | first half right | second half up | clips |")
    print("|---|---|---|---|---|")
    clips = [(subject, seed) for subject in SUBJECTS[:2] for seed in range(4)]

    def keyframed(subject: tuple[str, str, str]) -> dict[int, str]:
        return {0: caption(subject, "right"), 16: caption(subject, "up")}

    def a1111_text(subject: tuple[str, str, str]) -> str:  # "a red circle, moving right, on a blue background"
        colour, shape, background = subject
        return f"a {colour} {shape}\n0: moving right\n16: moving up\non a {background} background"

    rows = (
        ("right → up", "linear", keyframed),
        ("right → up", "none", keyframed),
        ("right → up, in the A1111 extension's text form", "slerp", a1111_text),
        ("right only (control)", None, lambda subject: caption(subject, "right")),
    )
    for label, interpolation, write in rows:
        right = up = 0
        for subject, seed in clips:
            prompt = write(subject)
            frames = pipe(
                prompt, num_frames=32, num_inference_steps=steps, seed=seed, progress=False,
                context_length=16, context_overlap=4, prompt_interpolation=interpolation or "linear",
            )[0]  # fmt: skip
            right += motion_correct(track(frames[:16]), "right")
            up += motion_correct(track(frames[16:]), "up")
        print(f"| {label} | {interpolation or '–'} | {right} of {len(clips)} | {up} of {len(clips)} | {len(clips)} |")


def right_up_rows(
    pipe: AnimationPipeline,
    steps: int,
    title: str,
    columns: str,
    rows: list[tuple[str, Callable[[tuple[str, str, str]], dict[int, str]], dict]],
    measure: Callable[[np.ndarray], tuple[bool, bool, float]],
    better: Callable[[float, float], bool],
) -> None:
    """Rows of clips travelling 'moving right' → 'moving up' over 32 frames in windows of 16/4 (two subjects × four
    seeds), each row (label, its keyframes for a subject, pipeline options): `measure(frames)` gives (the first
    stretch right, the later one up, a value); each row's values are counted against the first row's clip by clip
    with `better`."""
    print(f"\n## {title}\n")
    print(f"| {columns} | clips |")
    print("|---|---|---|---|---|---|---|")
    clips = [(subject, seed) for subject in SUBJECTS[:2] for seed in range(4)]
    first: list[float] = []
    for label, keyframes, options in rows:
        right = up = 0
        values = []
        for subject, seed in clips:
            prompt = keyframes(subject)
            frames = pipe(
                prompt, num_frames=32, num_inference_steps=steps, seed=seed, progress=False,
                context_length=16, context_overlap=4, **options,
            )[0]  # fmt: skip
            r, u, value = measure(frames)
            right, up = right + r, up + u
            values.append(value)
        compared = "–" if not first else f"{sum(better(v, v0) for v, v0 in zip(values, first))} of {len(clips)}"
        first = first or values
        drawn = ", ".join(str(k) for k in prompt)
        print(f"| {label} | {drawn} | {right} of {len(clips)} | {up} of {len(clips)} | {np.mean(values):+.3f} | "
              f"{compared} | {len(clips)} |", flush=True)  # fmt: skip


def held_travel(pipe: AnimationPipeline, steps: int) -> None:
    """Prompt travel right → up with the keyframes at frames 0 and 31 of 32 (windows of 16): with
    `prompt_fixed_ratio` 0.5 (prompt-travel's default) the text stays 'right' until frame 16 and travels after it;
    with 0 it is already halfway to 'up' at frame 16. Besides whether each half moves as captioned: how far the
    first half already drifts up (a fraction of the side), and in how many clips it drifts less than the same seed's
    clip without the hold."""

    def measure(frames: np.ndarray) -> tuple[bool, bool, float]:
        first = track(frames[:16])
        return motion_correct(first, "right"), motion_correct(track(frames[16:]), "up"), -displacement(first)[1]

    rows = [(str(ratio), lambda subject, ratio=ratio: held_keyframes(
        {0: caption(subject, "right"), 31: caption(subject, "up")}, ratio), {}) for ratio in (0.0, 0.5)]  # fmt: skip
    title = "prompt_fixed_ratio: 'moving right' at frame 0 → 'moving up' at frame 31, 32 frames, windows 16/4"
    columns = ("prompt_fixed_ratio | keyframes drawn | first half right | second half up | first half's upward drift "
               "(mean) | drifts less than at 0")  # fmt: skip
    right_up_rows(pipe, steps, title, columns, rows, measure, lambda d, d0: d < d0)


def looped_travel(pipe: AnimationPipeline, steps: int) -> None:
    """Prompt travel right → up with keyframes at 0 and 16 of 32 frames held as a prompt-travel document holds them
    (prompt_fixed_ratio 0.5, windows of 16), its keyframes going round (`prompt_travel_loop`, the document's default)
    or not: going round, the text travels back from 'up' towards 'right' over frames 24–31, and the clip's last
    stretch should turn right again. Per clip: the last 8 frames' rightward travel (a fraction of the side), and in
    how many clips it is larger than the same seed's without the loop."""

    def measure(frames: np.ndarray) -> tuple[bool, bool, float]:
        right, up = motion_correct(track(frames[:16]), "right"), motion_correct(track(frames[16:24]), "up")
        return right, up, displacement(track(frames[24:]))[0]

    def keyframes(subject: tuple[str, str, str], loop: bool) -> dict[int, str]:
        return held_keyframes({0: caption(subject, "right"), 16: caption(subject, "up")}, 0.5, 32 if loop else None)

    rows = [("yes" if loop else "no", lambda subject, loop=loop: keyframes(subject, loop), {"prompt_travel_loop": loop})
            for loop in (False, True)]  # fmt: skip
    title = "prompt_travel_loop: 'moving right' at 0 → 'moving up' at 16, 32 frames held at 0.5, windows 16/4"
    columns = ("keyframes go round | keyframes drawn | first half right | frames 16–23 up | frames 24–31's rightward "
               "travel (mean) | more rightward than without")  # fmt: skip
    right_up_rows(pipe, steps, title, columns, rows, measure, lambda t, t0: t > t0)


def long_clips(pipe: AnimationPipeline, steps: int, frames: int, seeds: int, with_free_init: bool) -> None:
    """Clips of `frames` frames: each 16-frame stretch moving the captioned way, the clip's consistency, and the
    largest step at a window seam against the median step."""
    print(f"\n## {frames}-frame clips: direction per 16-frame stretch and consistency ({steps} DDIM steps)\n")
    print("| way | stretches moving the captioned way | clips with every stretch right | consistency | s/clip |")
    print("|---|---|---|---|---|")
    ways = {
        "static windows 16/4": dict(context_length=16, context_overlap=4),
        "uniform windows 16/4, stride 2": dict(context_length=16, context_overlap=4, context_schedule="uniform",
                                               context_stride=2),
        "FreeNoise 16/4": dict(free_noise=FreeNoise(context_length=16, context_stride=4)),
    }  # fmt: skip
    if with_free_init:
        ways |= {f"{k} + FreeInit ×2": {**v, "free_init": FreeInit(iterations=2)} for k, v in list(ways.items())}
    motions = ("left", "right", "up", "down")
    for name, options in ways.items():
        hits, whole, scores, seconds = [], 0, [], []
        for i, motion in enumerate(motions):
            for seed in range(seeds):
                start = time.perf_counter()
                clip = pipe(
                    caption(SUBJECTS[i % len(SUBJECTS)], motion), num_frames=frames, num_inference_steps=steps,
                    seed=seed, progress=False, **options,
                )[0]  # fmt: skip
                seconds.append(time.perf_counter() - start)
                correct = segments_correct(clip, motion)
                hits += correct
                whole += all(correct)
                scores.append(consistency(track(clip)))
        n = len(motions) * seeds
        print(
            f"| {name} | {sum(hits)} of {len(hits)} | {whole} of {n} | {np.mean(scores):.2f} | {np.mean(seconds):.0f} |"
        )


def loops(pipe: AnimationPipeline, steps: int) -> None:
    """A looped schedule against static windows: the jump from the last frame to the first, against the clip's
    typical (median) and largest frame-to-frame steps."""
    print(f"\n## Loops: 32 frames, windows 16/4, {steps} DDIM steps\n")
    print("| schedule | seam ≤ median step | seam ≤ largest step | seam / median step (mean) | clips |")
    print("|---|---|---|---|---|")
    clips = [(SUBJECTS[i % 3], motion, seed) for i, motion in enumerate(("rotating", "bouncing")) for seed in range(4)]
    for name, schedule in (("looped (--loop)", "looped"), ("static", "static")):
        below_median = below_max = 0
        ratios = []
        for subject, motion, seed in clips:
            context = ContextSchedule(16, 4, schedule=schedule)
            frames = pipe(
                caption(subject, motion), num_frames=32, num_inference_steps=steps, seed=seed, progress=False,
                context=context,
            )[0]  # fmt: skip
            step = step_sizes(frames)
            seam = np.abs(frames[-1] - frames[0]).mean()
            below_median += seam <= np.median(step)
            below_max += seam <= step.max()
            ratios.append(seam / np.median(step))
        n = len(clips)
        print(f"| {name} | {below_median} of {n} | {below_max} of {n} | {np.mean(ratios):.2f} | {n} |")


MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
"""The motions of the motion scale tables, with the direction each travels in."""


def scaled_clips(
    pipe: AnimationPipeline, steps: int, scale: float, keyframes: dict[float, float] | None = None
) -> tuple[int, float, float, int]:
    """12 clips (4 motions × 3 seeds, 16 frames) at a motion scale, keyframed by step or not: (clips moving as
    captioned, mean travel along the captioned direction, mean consistency, clips)."""
    clips = [(SUBJECTS[i % 3], m, seed) for i, m in enumerate(MOTIONS) for seed in range(3)]
    hits, travels, scores = 0, [], []
    for subject, motion, seed in clips:
        frames = pipe(
            caption(subject, motion), num_frames=16, num_inference_steps=steps, seed=seed, progress=False,
            motion_scale=scale, motion_scale_steps=keyframes,
        )[0]  # fmt: skip
        t = track(frames)
        hits += motion_correct(t, motion)
        dx, dy = displacement(t)
        ux, uy = MOTIONS[motion]
        travels.append(dx * ux + dy * uy)
        scores.append(consistency(t))
    return hits, float(np.mean(travels)), float(np.mean(scores)), len(clips)


def motion_scale(pipe: AnimationPipeline, steps: int) -> None:
    """Motion scale 0 → 1 → 1.5 on 16-frame clips: the motion figure and the mean travel."""
    print(f"\n## Motion scale, 16 frames, {steps} DDIM steps\n")
    print(
        "| motion scale | motion accuracy | mean travel along the captioned direction (fraction of the side) | clips |"
    )
    print("|---|---|---|---|")
    for scale in (0.0, 0.5, 1.0, 1.5):
        hits, travel, _, n = scaled_clips(pipe, steps, scale)
        print(f"| {scale} | {hits} of {n} | {travel:+.3f} | {n} |")


def motion_scale_steps(pipe: AnimationPipeline, steps: int) -> None:
    """The motion modules on for the first part of the steps only, or off for it (`motion_scale_steps`): the motion
    figure, the mean travel and the temporal consistency of the same clips as the motion scale table."""
    print(f"\n## Motion scale keyframed by step (--motion-scale-steps), 16 frames, {steps} DDIM steps\n")
    print("| motion modules | motion accuracy | mean travel along the captioned direction | consistency | clips |")
    print("|---|---|---|---|---|")
    rows = [("on throughout", 1.0, None)]
    rows += [(f"on for the first {round(x * 100)} % of the steps", 1.0, {x: 0.0}) for x in (0.2, 0.4, 0.6, 0.8)]
    rows += [(f"off for the first {round(x * 100)} %, then on", 0.0, {x: 1.0}) for x in (0.2, 0.4)]
    rows += [("off throughout", 0.0, None)]
    for label, scale, keyframes in rows:
        hits, travel, score, n = scaled_clips(pipe, steps, scale, keyframes)
        print(f"| {label} | {hits} of {n} | {travel:+.3f} | {score:.2f} | {n} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="*",
        default=["travel", "hold", "travel-loop", "long", "loop", "scale", "scale-steps"],
        help="which measurements",
    )
    parser.add_argument("--steps", type=int, default=15, help="DDIM steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    if "travel" in args.only:
        travel(pipe, args.steps)
    if "hold" in args.only:
        held_travel(pipe, args.steps)
    if "travel-loop" in args.only:
        looped_travel(pipe, args.steps)
    if "scale" in args.only:
        motion_scale(pipe, args.steps)
    if "scale-steps" in args.only:
        motion_scale_steps(pipe, args.steps)
    if "loop" in args.only:
        loops(pipe, args.steps)
    if "long" in args.only:
        long_clips(pipe, args.steps, 64, seeds=2, with_free_init=True)
        long_clips(pipe, args.steps, 128, seeds=1, with_free_init=False)


if __name__ == "__main__":
    main()

"""Measure generated animations of the world: does the object move as captioned, and does it stay itself?

Each row is a way of generating (base + motion module, frames generated independently, …); each is run on
the same prompts and seeds, and its frames are measured (`metrics.py`): motion accuracy (the centroid track or
area change matches the caption), colour accuracy, and temporal consistency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from animatediff.world.metrics import colour_correct, consistency, motion_correct, track

Generator = Callable[[str, int], np.ndarray]  # (prompt, seed) -> frames (f, H, W, 3) in [0, 1]

MEASURED_MOTIONS = ("left", "right", "up", "down", "growing", "shrinking")


@dataclass(frozen=True)
class Prompt:
    colour: str
    shape: str
    motion: str
    background: str

    @property
    def text(self) -> str:
        phrase = f"moving {self.motion}" if self.motion in ("left", "right", "up", "down") else self.motion
        return f"a {self.colour} {self.shape} {phrase} on a {self.background} background"


@dataclass
class RowResult:
    name: str
    motion_accuracy: float
    colour_accuracy: float
    consistency: float
    samples: int
    per_motion: dict[str, float] = field(default_factory=dict)


def evaluation_prompts(n: int, seed: int = 0, motions: tuple[str, ...] = MEASURED_MOTIONS) -> list[Prompt]:
    """`n` prompts cycling through the measured motions, with colour/shape/background drawn from the base world."""
    from animatediff.world.scenes import BASE_WORLD

    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n):
        colour = str(rng.choice(BASE_WORLD.colours))
        background = str(rng.choice([b for b in BASE_WORLD.backgrounds if b != colour]))
        prompts.append(Prompt(colour, str(rng.choice(BASE_WORLD.shapes)), motions[i % len(motions)], background))
    return prompts


def evaluate_row(name: str, generate: Generator, prompts: list[Prompt], seeds: list[int]) -> RowResult:
    motion_hits, colour_hits, scores = [], [], []
    by_motion: dict[str, list[bool]] = {}
    for prompt in prompts:
        for seed in seeds:
            t = track(generate(prompt.text, seed))
            hit = motion_correct(t, prompt.motion)
            motion_hits.append(hit)
            by_motion.setdefault(prompt.motion, []).append(hit)
            colour_hits.append(colour_correct(t, prompt.colour))
            scores.append(consistency(t))
    return RowResult(
        name,
        float(np.mean(motion_hits)),
        float(np.mean(colour_hits)),
        float(np.mean(scores)),
        len(motion_hits),
        {m: float(np.mean(v)) for m, v in by_motion.items()},
    )


def table(rows: list[RowResult]) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| generation | motion accuracy | colour accuracy | consistency | clips |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.motion_accuracy:.2f} | {r.colour_accuracy:.2f} | {r.consistency:.2f} | {r.samples} |"
        )
    return "\n".join(lines)


def pipeline_rows(pipe, steps: int = 25, guidance_scale: float = 7.5, frames: int = 16) -> dict[str, Generator]:  # noqa: ANN001
    """The rows one pipeline gives: with its motion module, and with frames generated independently."""

    def with_motion(enabled: bool) -> Generator:
        def generate(prompt: str, seed: int) -> np.ndarray:
            pipe.unet.motion_enabled = enabled
            try:
                return pipe(
                    prompt,
                    num_frames=frames,
                    num_inference_steps=steps,
                    guidance_scale=guidance_scale,
                    seed=seed,
                    progress=False,
                )[0]
            finally:
                pipe.unet.motion_enabled = True

        return generate

    return {
        "base + motion module": with_motion(True),
        "base, frames independent (no motion module)": with_motion(False),
    }


def sample_sheet(
    generate: Generator, prompts: list[Prompt], seed: int, frames: tuple[int, ...] = (0, 5, 10, 15), scale: int = 4
) -> np.ndarray:
    """One row per prompt of chosen frames side by side, upscaled: a picture of what the numbers measure."""
    rows = []
    for prompt in prompts:
        clip = generate(prompt.text, seed)
        rows.append(np.concatenate([clip[min(i, len(clip) - 1)] for i in frames], axis=1))
    sheet = np.concatenate(rows, axis=0)
    return np.kron(sheet, np.ones((scale, scale, 1)))

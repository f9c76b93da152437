"""Measure generated animations of the world: does the object move as captioned, and does it stay itself?

Each row is a way of generating (base + motion module, a personalized model + the same module, frames generated
independently, a training-free Text2Video-Zero baseline); each runs on the same prompts and seeds, and its frames
are measured (`metrics.py`): motion accuracy (the centroid track or area change matches the caption), colour
accuracy, temporal consistency, and look accuracy (the fraction of frames the look classifier, `looks.py`, reads
as the prompt's shape and texture: a personalized model's star or outline style kept in every frame).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animatediff.world.layout import WORLD_GUIDANCE_SCALE, WorldModels
from animatediff.world.metrics import colour_correct, consistency, motion_correct, track

if TYPE_CHECKING:
    from animatediff.models import MotionModules
    from animatediff.pipeline import AnimationPipeline
    from animatediff.world.looks import LookClassifier

Generator = Callable[[str, int], np.ndarray]  # (prompt, seed) -> frames (f, H, W, 3) in [0, 1]

MEASURED_MOTIONS = ("left", "right", "up", "down", "growing", "shrinking")


# The look each kind of model is asked for: the base world's own, or a personalization's (`datasets.py`).
LOOKS: dict[str, dict[str, str]] = {"base": {}, "style": {"texture": "outlined"}, "object": {"shape": "star"}}


@dataclass(frozen=True)
class Prompt:
    colour: str
    shape: str
    motion: str
    background: str
    texture: str = "solid"

    @property
    def text(self) -> str:
        from animatediff.world.scenes import caption

        return caption(self.colour, self.shape, self.background, self.texture, self.motion)


@dataclass
class RowResult:
    name: str
    motion_accuracy: float
    colour_accuracy: float
    consistency: float
    samples: int
    per_motion: dict[str, float] = field(default_factory=dict)
    look_accuracy: float | None = None
    """Fraction of frames the look classifier reads as the prompt's shape and texture (None: not measured)."""
    shape_accuracy: float | None = None
    """Fraction of frames read as the prompt's shape, whatever their texture (None: not measured)."""
    texture_accuracy: float | None = None
    """Fraction of frames read as the prompt's texture, whatever their shape (None: not measured)."""
    look_by_shape: dict[str, float] = field(default_factory=dict)
    """Look accuracy of the prompts asking for each shape: which shapes a model fails to draw."""


def evaluation_prompts(
    n: int, seed: int = 0, motions: tuple[str, ...] = MEASURED_MOTIONS, look: str = "base"
) -> list[Prompt]:
    """`n` prompts cycling through the measured motions, with colour/shape/background drawn from the base world;
    `look` 'style' makes every object outlined, 'object' makes it a star (the personalized models' looks)."""
    from animatediff.world.scenes import BASE_WORLD

    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose one of: {', '.join(LOOKS)}")
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n):
        colour = str(rng.choice(BASE_WORLD.colours))
        background = str(rng.choice([b for b in BASE_WORLD.backgrounds if b != colour]))
        fields = {"shape": str(rng.choice(BASE_WORLD.shapes)), **LOOKS[look]}
        prompts.append(Prompt(colour, motion=motions[i % len(motions)], background=background, **fields))
    return prompts


def evaluate_row(
    name: str,
    generate: Generator,
    prompts: list[Prompt],
    seeds: list[int],
    looks: LookClassifier | None = None,
) -> RowResult:
    """Generate every (prompt, seed) clip and measure it; `looks` adds the look accuracy, split into shape and
    texture and by the asked shape."""
    motion_hits, colour_hits, scores = [], [], []
    by_motion: dict[str, list[bool]] = {}
    shape_hits, texture_hits, asked_shapes = [], [], []  # one entry per frame read
    for prompt in prompts:
        for seed in seeds:
            frames = generate(prompt.text, seed)
            t = track(frames)
            hit = motion_correct(t, prompt.motion)
            motion_hits.append(hit)
            by_motion.setdefault(prompt.motion, []).append(hit)
            colour_hits.append(colour_correct(t, prompt.colour))
            scores.append(consistency(t))
            if looks is not None:
                shapes, textures = looks.predict(frames)
                shape_hits += [s == prompt.shape for s in shapes]
                texture_hits += [x == prompt.texture for x in textures]
                asked_shapes += [prompt.shape] * len(shapes)
    look_hits = np.logical_and(shape_hits, texture_hits)
    asked = np.array(asked_shapes)

    def fraction(hits) -> float | None:
        return float(np.mean(hits)) if len(hits) else None

    return RowResult(
        name,
        float(np.mean(motion_hits)),
        float(np.mean(colour_hits)),
        float(np.mean(scores)),
        len(motion_hits),
        {m: float(np.mean(v)) for m, v in by_motion.items()},
        fraction(look_hits),
        fraction(shape_hits),
        fraction(texture_hits),
        {shape: float(look_hits[asked == shape].mean()) for shape in sorted(set(asked_shapes))},
    )


def table(rows: list[RowResult]) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| generation | motion accuracy | colour accuracy | look accuracy | consistency | clips |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        look = "–" if r.look_accuracy is None else f"{r.look_accuracy:.2f}"
        lines.append(
            f"| {r.name} | {r.motion_accuracy:.2f} | {r.colour_accuracy:.2f} | {look} | {r.consistency:.2f} "
            f"| {r.samples} |"
        )
    return "\n".join(lines)


def _clip(
    pipe: AnimationPipeline, prompt: str, seed: int, steps: int, guidance_scale: float, frames: int
) -> np.ndarray:
    """One clip (f, H, W, 3) in [0, 1], quietly."""
    return pipe(
        prompt, num_frames=frames, num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed, progress=False
    )[0]


def pipeline_rows(
    pipe: AnimationPipeline,
    steps: int = 25,
    guidance_scale: float = WORLD_GUIDANCE_SCALE,
    frames: int = 16,
    label: str = "base",
) -> dict[str, Generator]:
    """The rows one pipeline gives: with its motion module, and with frames generated independently."""

    def with_motion(enabled: bool) -> Generator:
        def generate(prompt: str, seed: int) -> np.ndarray:
            pipe.unet.motion_enabled = enabled
            try:
                return _clip(pipe, prompt, seed, steps, guidance_scale, frames)
            finally:
                pipe.unet.motion_enabled = True

        return generate

    return {
        f"{label} + motion module": with_motion(True),
        f"{label}, frames independent (no motion module)": with_motion(False),
    }


def text2video_zero_row(
    pipe: AnimationPipeline, steps: int = 25, guidance_scale: float = WORLD_GUIDANCE_SCALE, frames: int = 16
) -> Generator:
    """The training-free baseline on the same image model: cross-frame attention to the first frame plus a
    latent translation. It is given the captioned direction (a user of Text2Video-Zero picks the direction by
    hand); growing and shrinking have none to give, so those clips get no translation."""
    from animatediff.baselines.text2video_zero import direction_from_prompt, text2video_zero

    def generate(prompt: str, seed: int) -> np.ndarray:
        return text2video_zero(
            pipe,
            prompt,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            direction=direction_from_prompt(prompt),
            progress=False,
        )[0]

    return generate


def caption_motion(prompt: str) -> str:
    """The motion a world caption names ('still' when it names none)."""
    from animatediff.world.scenes import MOTION_PHRASES

    words = f" {prompt} "
    named = [m for m, phrase in MOTION_PHRASES.items() if phrase and f" {phrase} " in words]
    return named[0] if named else "still"


def motion_lora_row(
    pipe: AnimationPipeline,
    loras: dict[str, Path],
    steps: int = 25,
    guidance_scale: float = WORLD_GUIDANCE_SCALE,
    frames: int = 16,
) -> Generator:
    """The motion module steered by the MotionLoRA of the captioned motion, merged for that clip only: picked by
    hand, as a user of the official repo picks its pan or zoom MotionLoRA. A motion with no MotionLoRA runs the
    module alone."""

    def generate(prompt: str, seed: int) -> np.ndarray:
        motion = caption_motion(prompt)
        name = pipe.add_lora(loras[motion], 1.0, kind="motion") if motion in loras else None
        try:
            return _clip(pipe, prompt, seed, steps, guidance_scale, frames)
        finally:
            if name is not None:
                pipe.loras.remove(name)

    return generate


def memoized(generate: Generator) -> Generator:
    """The same generator, remembering its clips, so a sample sheet of evaluated prompts costs nothing."""
    clips: dict[tuple[str, int], np.ndarray] = {}

    def cached(prompt: str, seed: int) -> np.ndarray:
        if (prompt, seed) not in clips:
            clips[prompt, seed] = generate(prompt, seed)
        return clips[prompt, seed]

    return cached


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


def _switched_off_motion_modules(base: Path) -> MotionModules:
    """A fresh motion-module set that fits `base`'s UNet, for a build that has none: every row such a build gets
    runs with the modules off, but the pipeline is built around a set."""
    from animatediff.base_model import read_component_config
    from animatediff.models import MotionModules
    from animatediff.train.config import ModelConfig
    from animatediff.train.motion_init import scratch_config

    return MotionModules(scratch_config(ModelConfig(), read_component_config(base, "unet")))


@dataclass
class Evaluation:
    rows: list[RowResult]
    sheets: list[np.ndarray]
    """One picture per model: its rows side by side (with the module, independent frames, Text2Video-Zero)."""


def evaluate_world(
    models: WorldModels,
    prompts: int = 12,
    seeds: int = 2,
    steps: int = 25,
    guidance_scale: float = WORLD_GUIDANCE_SCALE,
    text2video_zero: bool = True,
    sheet_prompts: int = 4,
    device: str = "cpu",
) -> Evaluation:
    """Every row of the world's table on the same prompts and seeds: for the base and each personalized model,
    with the motion module, with frames generated independently, with the motion module steered by the MotionLoRA
    of the captioned motion (when the build has MotionLoRAs), and (optionally) Text2Video-Zero; plus the base
    with the motion module asked for each personalized look, to show the look comes from the personalization.

    A build without a motion module (stopped after its image stages) gets the rows that need none: independent
    frames and Text2Video-Zero, and the base asked for each look with frames independent."""
    from animatediff.pipeline import AnimationPipeline
    from animatediff.world.looks import load_look_classifier

    looks = load_look_classifier(models.looks) if models.looks else None
    seed_list = list(range(seeds))
    module = models.motion_module or _switched_off_motion_modules(models.base)
    base_pipe = AnimationPipeline.from_pretrained(models.base, module, device=device)
    # (label, pipeline, look asked for); the LoRA is merged into the base pipeline only while its rows run.
    groups: list[tuple[str, AnimationPipeline, str]] = [("base", base_pipe, "base")]
    if models.dreambooth:
        pipe = AnimationPipeline.from_pretrained(models.base, module, dreambooth=models.dreambooth, device=device)
        groups.append(("star DreamBooth (single file)", pipe, "object"))
    if models.lora:
        groups.append(("outlined-style LoRA", base_pipe, "style"))

    rows, sheets = [], []
    for label, pipe, look in groups:
        asked = evaluation_prompts(prompts, look=look)
        name = None
        if look == "style":
            name = pipe.add_lora(models.lora, 1.0)
        try:
            generators = {k: memoized(g) for k, g in pipeline_rows(pipe, steps, guidance_scale, label=label).items()}
            if models.motion_module is None:
                del generators[f"{label} + motion module"]
            elif models.motion_loras:
                generators[f"{label} + motion module + MotionLoRA of the captioned motion"] = memoized(
                    motion_lora_row(pipe, models.motion_loras, steps, guidance_scale)
                )
            if text2video_zero:
                generators[f"{label}, Text2Video-Zero (captioned direction)"] = memoized(
                    text2video_zero_row(pipe, steps, guidance_scale)
                )
            rows += [evaluate_row(n, g, asked, seed_list, looks) for n, g in generators.items()]
            shown = [sample_sheet(g, asked[:sheet_prompts], seed=0) for g in generators.values()]
            gap = np.ones((shown[0].shape[0], 8, 3))
            sheets.append(np.concatenate([x for sheet in shown for x in (sheet, gap)][:-1], axis=1))
        finally:
            if name is not None:
                pipe.loras.remove(name)
        if look != "base":
            row = "base + motion module" if models.motion_module else "base, frames independent (no motion module)"
            generate = pipeline_rows(base_pipe, steps, guidance_scale)[row]
            control = f"{row.removesuffix(' (no motion module)')}, asked for the {label}'s look (no personalization)"
            rows.append(evaluate_row(control, generate, asked, seed_list, looks))
    return Evaluation(rows, sheets)


def write_report(evaluation: Evaluation, out_dir: str | os.PathLike) -> str:
    """eval.md (the table), eval.json (every row's figures) and samples.png (each model's sheet, one under another)
    into `out_dir`; returns the table."""
    import json
    from dataclasses import asdict

    from PIL import Image

    from animatediff.formats.state_dicts import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = table(evaluation.rows)
    write_atomic(out / "eval.md", lambda tmp: tmp.write_text(text + "\n"))
    rows = json.dumps([asdict(r) for r in evaluation.rows], indent=2) + "\n"
    write_atomic(out / "eval.json", lambda tmp: tmp.write_text(rows))
    width = max(sheet.shape[1] for sheet in evaluation.sheets)
    padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=1.0) for s in evaluation.sheets]
    picture = Image.fromarray((np.concatenate(padded) * 255).round().astype(np.uint8))
    write_atomic(out / "samples.png", lambda tmp: picture.save(tmp, format="PNG"))
    return text


def row_details(row: RowResult) -> list[str]:
    """The lines a row adds under the table: its accuracy per motion, and where the look fails."""
    lines = [f"{row.name}: per motion {', '.join(f'{m} {v:.2f}' for m, v in row.per_motion.items())}"]
    if row.look_accuracy is not None:
        by_shape = ", ".join(f"{s} {v:.2f}" for s, v in row.look_by_shape.items())
        lines.append(
            f"  look: shape {row.shape_accuracy:.2f}, texture {row.texture_accuracy:.2f}; by asked shape {by_shape}"
        )
    return lines

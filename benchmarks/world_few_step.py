"""Few-step sampling measured on the embedded world: 4 steps with a few-step preset's schedule against the 25 DDIM
steps the world is sampled with, and against 4 plain DDIM steps (what a preset buys over just fewer steps).

Every row draws the same prompts and seeds (`world.evaluate.evaluation_prompts`: colours, shapes and backgrounds of
the base world, cycling through the measured motions) with the embedded base and motion module, and measures them
as `animatediff world eval` does (`world.metrics`): motion accuracy (the tracked centroid or area moves as
captioned) and temporal consistency; colour accuracy beside them. The embedded motion module is the 25-step one,
not distilled for few steps: the rows show what a schedule alone does. The world base is a v-prediction,
zero-terminal-SNR model, so every scheduler here samples it that way (`for_model`), with trailing timesteps: plain
DDIM at 4 steps is already trailing-spaced on it.

    python benchmarks/world_few_step.py                  # 4 rows × 16 clips: 12-15 minutes on 2 CPU cores
    python benchmarks/world_few_step.py --prompts 6 --seeds 1
    python benchmarks/world_few_step.py --table samplers # the UIs' samplers at 25 steps against DDIM
    python benchmarks/world_few_step.py --table pag      # perturbed-attention guidance at scales 1, 3 and 6

`--table samplers` measures the same way the samplers `--scheduler` takes from the UIs (A1111, ComfyUI) that can
sample a zero-terminal-SNR base (Heun, DPM2, DEIS and DPM++ SDE cannot: they refuse the world in one line), at the
world's 25 steps and guidance.

`--table pag` adds PAG (its default layers) to the world's DDIM sampling, and two columns: sharpness (the frames'
mean absolute difference between neighbouring pixels, across and down) and change (the mean absolute pixel
difference from the same clip without PAG).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from world_setup import clip_options, embedded_pipeline

from animatediff.pipeline import PAG
from animatediff.sampling import for_model
from animatediff.sampling.presets import resolve_sampling
from animatediff.world.evaluate import evaluate_row, evaluation_prompts
from animatediff.world.layout import WORLD_GUIDANCE_SCALE


@dataclass(frozen=True)
class Row:
    """One way of sampling: a preset (or none) and the settings given over it, as generate's flags give them."""

    label: str
    preset: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    pag_scale: float | None = None
    """Perturbed-attention guidance's scale (its default layers: the middle block's attn1), as --pag-scale."""


ROWS = (
    Row("DDIM (the world's default)", scheduler="ddim", steps=25, guidance_scale=WORLD_GUIDANCE_SCALE),
    Row("--preset lightning-4step (Euler, trailing, guidance 1)", preset="lightning-4step"),
    Row(
        f"--preset tcd-4step --guidance-scale {WORLD_GUIDANCE_SCALE:g} (TCD, gamma 0.3)",
        preset="tcd-4step",
        guidance_scale=WORLD_GUIDANCE_SCALE,
    ),
    Row("DDIM, plain fewer steps", scheduler="ddim", steps=4, guidance_scale=WORLD_GUIDANCE_SCALE),
)
SAMPLER_ROWS = tuple(
    Row(f"--scheduler {name}", scheduler=name, steps=25, guidance_scale=WORLD_GUIDANCE_SCALE)
    for name in ("ddim", "euler", "euler-karras", "euler-ancestral", "dpm++-2m-karras", "dpm++-2m-sde")
)
PAG_ROWS = tuple(
    Row(label, scheduler="ddim", steps=25, guidance_scale=WORLD_GUIDANCE_SCALE, pag_scale=pag)
    for label, pag in (
        ("DDIM, no PAG (the world's default)", None),
        ("--pag-scale 1", 1.0),
        ("--pag-scale 3", 3.0),
        ("--pag-scale 6", 6.0),
    )
)


def main() -> None:
    parser = clip_options(__doc__.splitlines()[0], steps=False)
    parser.add_argument("--table", choices=["few-step", "samplers", "pag"], default="few-step", help="which rows")
    args = parser.parse_args()
    pipe = embedded_pipeline(args.threads)
    prompts = evaluation_prompts(args.prompts)
    seeds = list(range(args.seeds))
    clips = len(prompts) * len(seeds)

    titles = {"few-step": "Few-step sampling", "samplers": "Samplers", "pag": "Perturbed-attention guidance"}
    print(f"\n## {titles[args.table]} on the embedded world\n")
    shape = f"{len(prompts)} prompts × {len(seeds)} seeds), {args.frames} frames of 32×32"
    print(f"{clips} clips per row ({shape}, ", end="")
    print(f"{args.threads} CPU threads; the embedded motion module (trained for 25-step sampling, not distilled).\n")
    extra = " sharpness | change |" if args.table == "pag" else ""
    print(f"| sampler | steps | guidance | motion accuracy | consistency | colour accuracy |{extra} s/clip |")
    print("|---|---|---|---|---|---|---|" + "---|---|" * bool(extra))
    drawn: dict[str, list[np.ndarray]] = {}
    for row in {"few-step": ROWS, "samplers": SAMPLER_ROWS, "pag": PAG_ROWS}[args.table]:
        sampling = resolve_sampling(row.preset, row.scheduler, row.steps, row.guidance_scale)
        pipe.scheduler = for_model(sampling.make_scheduler(), pipe.noise_settings)  # as generate builds it
        guidance = pipe.guidance_scale if sampling.guidance_scale is None else sampling.guidance_scale

        def generate(prompt: str, seed: int, steps: int = sampling.steps, guidance: float = guidance, row=row):  # noqa: ANN001, ANN202
            call = dict(num_frames=args.frames, num_inference_steps=steps, guidance_scale=guidance, progress=False)
            clip = pipe(prompt, seed=seed, **call, pag=None if row.pag_scale is None else PAG(row.pag_scale))[0]
            drawn.setdefault(row.label, []).append(clip)
            return clip

        start = time.perf_counter()
        result = evaluate_row(row.label, generate, prompts, seeds)
        seconds = (time.perf_counter() - start) / clips
        if extra:  # the frames' mean gradient magnitude, and their mean change from the first row's
            first, mine = next(iter(drawn.values())), drawn[row.label]
            sharp = np.mean([np.abs(np.diff(c, axis=1)).mean() + np.abs(np.diff(c, axis=2)).mean() for c in mine])
            change = np.mean([np.abs(a - b).mean() for a, b in zip(mine, first, strict=True)])
            extra_cells = f" {sharp:.4f} | {change:.4f} |"
        else:
            extra_cells = ""
        print(
            f"| {row.label} | {sampling.steps} | {guidance:g} | {result.motion_accuracy:.2f} | "
            f"{result.consistency:.2f} | {result.colour_accuracy:.2f} |{extra_cells} {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""The paper's ablations, rerun on the world: each trains its variants at one budget over the embedded world's frozen
base and measures them on the same prompts and seeds (`evaluate.py`).

    animatediff world ablate schedule      # motion modules trained on three diffusion schedules (paper Sec. 4.2)
    animatediff world ablate adapter       # a domain adapter on watermarked videos, sampled at α = 1, 0.5, 0 (Fig. 6)
    animatediff world ablate design        # the temporal transformer against a temporal convolution (Sec. 5.3)
    animatediff world ablate motion-lora   # MotionLoRA ranks and reference-clip counts for one motion (Sec. 5.3)

Each writes `<name>.md` (the table) and `<name>.json` (every figure) into its output folder; its training runs keep
their checkpoints under `runs/`, so a rerun goes on where one stopped and skips the variants already trained.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from animatediff.errors import InputError
from animatediff.formats.state_dicts import write_atomic
from animatediff.world.datasets import WorldVideos
from animatediff.world.evaluate import Prompt, RowResult, evaluate_row, evaluation_prompts
from animatediff.world.layout import EMBEDDED, WORLD_GUIDANCE_SCALE, WorldModels
from animatediff.world.metrics import artifact_rate
from animatediff.world.recipe import MotionLoraStage, MotionStage
from animatediff.world.scenes import BASE_WORLD

ABLATIONS = ("schedule", "adapter", "design", "motion-lora")

SCHEDULES = {
    "A: scaled linear 0.00085→0.012 (SD's)": ("scaled_linear", 0.00085, 0.012),
    "B: linear 0.00085→0.012 (AnimateDiff's)": ("linear", 0.00085, 0.012),
    "C: linear 0.0001→0.02 (DDPM's)": ("linear", 0.0001, 0.02),
}
"""The diffusion schedules the motion modules of the schedule ablation train on: (beta_schedule, start, end)."""


@dataclass
class AblationSettings:
    """The budget every variant of an ablation trains and is measured at."""

    steps: int = 600
    """Optimizer steps of each motion module (the shipped recipe trains 1500)."""
    batch_size: int = 8
    """Clips per step of each motion module."""
    frames: int = 16
    """Frames per clip, in training and sampling."""
    adapter_steps: int = 500
    """Optimizer steps of the domain adapter (one frame per clip)."""
    adapter_rank: int = 8
    """Rank of the domain adapter."""
    artifact_rate: float = 1.0
    """Share of the adapter ablation's training clips that carry the watermark (WebVid's nearly all do)."""
    alphas: tuple[float, ...] = (1.0, 0.5, 0.0)
    """Adapter scales the adapter ablation samples at."""
    lora_steps: int = 300
    """Optimizer steps of each MotionLoRA."""
    lora_motion: str = "growing"
    """The motion of the MotionLoRA ablation (the embedded module alone gets growing right 3 times in 8)."""
    ranks: tuple[int, ...] = (2, 8, 32, 64)
    """MotionLoRA ranks, at `clips[-1]` reference clips (64 is the world module's narrowest attention)."""
    clips: tuple[int, ...] = (1, 5, 50)
    """MotionLoRA reference-clip counts, at rank 8."""
    prompts: int = 12
    """Evaluation prompts per row."""
    seeds: int = 2
    """Seeds per prompt."""
    eval_steps: int = 25
    """Denoising steps of each evaluation clip (DDIM, the base's schedule)."""
    seed: int = 0
    """Seed of every training run."""


def quick_settings() -> AblationSettings:
    """A seconds-long budget, for tests: the commands' plumbing, not their findings."""
    return AblationSettings(
        steps=2, batch_size=2, frames=4, adapter_steps=2, lora_steps=2, ranks=(2, 4), clips=(1, 2), prompts=1,
        seeds=1, eval_steps=2, alphas=(1.0, 0.0),
    )  # fmt: skip


Runner = Callable[["WorldModels", Path, "AblationSettings", bool, str], list["Variant"]]


@dataclass
class Variant:
    """One row of an ablation's table."""

    name: str
    figures: dict[str, float | int | None] = field(default_factory=dict)


@dataclass
class Ablation:
    name: str
    command: str
    variants: list[Variant]
    minutes: float
    settings: dict


def check_ablation(name: str, settings: AblationSettings, world: WorldModels) -> None:
    """Everything that can be wrong before any training: the name, the ranks, the counts; one line each."""
    if name not in ABLATIONS:
        close = difflib.get_close_matches(name, ABLATIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown ablation {name!r}: choose one of {', '.join(ABLATIONS)}{hint}")
    if world.motion_module is None and name in ("adapter", "motion-lora"):
        raise InputError(f"the {name} ablation needs a world build with a motion module; {world.base.parent} has none")
    counts = {"steps": settings.steps, "batch_size": settings.batch_size, "frames": settings.frames}
    counts |= {"adapter_steps": settings.adapter_steps, "lora_steps": settings.lora_steps}
    counts |= {"prompts": settings.prompts, "seeds": settings.seeds, "eval_steps": settings.eval_steps}
    counts |= {"clips": min(settings.clips), "ranks": min(settings.ranks), "adapter_rank": settings.adapter_rank}
    for key, value in counts.items():
        if value < 1:
            raise InputError(f"{key} must be at least 1, got {value}")
    if name == "motion-lora":
        if settings.lora_motion not in BASE_WORLD.motions:
            raise InputError(f"lora_motion {settings.lora_motion!r} is not one of {', '.join(BASE_WORLD.motions)}")
        width = narrowest_motion_attention(world.motion_module)
        if max(settings.ranks) > width:
            raise InputError(
                f"MotionLoRA rank {max(settings.ranks)} is larger than the motion module's narrowest attention "
                f"layer ({width} features)"
            )


def narrowest_motion_attention(path: Path) -> int:
    """The fewest input features of any temporal attention projection of a motion-module file."""
    from animatediff.formats.motion_module_files import load_motion_modules

    modules = load_motion_modules(path)
    widths = [m.in_features for n, m in modules.named_modules() if n.endswith((".to_q", ".to_k", ".to_v"))]
    return min(widths)


def run_ablation(
    name: str,
    out_dir: str | os.PathLike,
    settings: AblationSettings | None = None,
    world: str | os.PathLike = EMBEDDED,
    progress: bool = True,
    device: str = "cpu",
) -> Ablation:
    """Train and measure ablation `name`'s variants; `<name>.md` and `<name>.json` go into `out_dir`."""
    settings = settings or AblationSettings()
    models = WorldModels.from_folder(world)
    check_ablation(name, settings, models)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs: dict[str, Runner] = {
        "schedule": _schedule,
        "adapter": _adapter,
        "design": _design,
        "motion-lora": _motion_lora,
    }
    variants = runs[name](models, out / "runs", settings, progress, device)
    result = Ablation(name, f"animatediff world ablate {name}", variants, (time.perf_counter() - start) / 60,
                      asdict(settings))  # fmt: skip
    write_atomic(out / f"{name}.md", lambda tmp: tmp.write_text(ablation_table(result) + "\n"))
    write_atomic(out / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(asdict(result), indent=2) + "\n"))
    return result


def ablation_table(result: Ablation) -> str:
    """The variants' figures as a Markdown table (columns: the figures any variant has, in first-seen order)."""
    columns: list[str] = []
    for variant in result.variants:
        columns += [k for k in variant.figures if k not in columns]
    lines = [
        "| variant | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for variant in result.variants:
        cells = [_cell(variant.figures.get(c)) for c in columns]
        lines.append(f"| {variant.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}" if 0 < abs(value) < 0.1 else f"{value:.2f}"  # frame changes are hundredths


# ------------------------------------------------------------------------------------------------- training runs


def _motion_config(models: WorldModels, run_dir: Path, settings: AblationSettings, progress: bool, **changes):
    """The world's motion-module run at this budget, with `changes` (optim=…, model=…, adapter=…) applied."""
    from animatediff.world.build import world_train_config

    stage = replace(MotionStage(), steps=settings.steps, batch_size=settings.batch_size, seed=settings.seed)
    config = world_train_config(models.base, run_dir, stage, settings.frames, progress)
    return replace(config, **{k: v(config) if callable(v) else v for k, v in changes.items()})


def _train(config, clips: Dataset, exported: str) -> Path:  # noqa: ANN001 - a TrainConfig
    from animatediff.world.build import train_and_export

    return train_and_export(config, clips, exported)


def _clips(settings: AblationSettings, config, rate: float = 0.0) -> WorldVideos:  # noqa: ANN001 - a TrainConfig
    """The world's clips of every motion, as the motion-module stage renders them; `rate` of them watermarked."""
    stage = MotionStage()
    return WorldVideos(
        stage.clips, settings.seed, BASE_WORLD, config.data.resolution, settings.frames, artifact_rate=rate
    )


# ---------------------------------------------------------------------------------------------------- measuring


def _measure(
    name: str,
    models: WorldModels,
    module: Path,
    settings: AblationSettings,
    device: str,
    prompts: list[Prompt] | None = None,
    loras: tuple[tuple[str, Path, float], ...] = (),
    extra: dict | None = None,
) -> Variant:
    """Sample base + `module` (+ `loras`: (kind, path, scale)) on the evaluation prompts and measure the clips: the
    world's motion, colour and consistency figures, how much the frames change, and the watermark rate."""
    from animatediff.pipeline import AnimationPipeline

    pipe = AnimationPipeline.from_pretrained(models.base, module, device=device)
    for kind, path, scale in loras:
        pipe.add_lora(path, scale, kind=kind)
    clips: list[np.ndarray] = []

    def generate(prompt: str, seed: int) -> np.ndarray:
        frames = pipe(prompt, num_frames=settings.frames, num_inference_steps=settings.eval_steps,
                      guidance_scale=WORLD_GUIDANCE_SCALE, seed=seed, progress=False)[0]  # fmt: skip
        clips.append(frames)
        return frames

    asked = prompts or evaluation_prompts(settings.prompts)
    row = evaluate_row(name, generate, asked, list(range(settings.seeds)))
    return Variant(name, {**_row_figures(row), **_clip_figures(clips), **(extra or {})})


def _row_figures(row: RowResult) -> dict[str, float | int]:
    return {
        "motion_accuracy": row.motion_accuracy,
        "colour_accuracy": row.colour_accuracy,
        "consistency": row.consistency,
        "clips": row.samples,
    }


def _clip_figures(clips: list[np.ndarray]) -> dict[str, float]:
    """frame_change: mean absolute change between consecutive frames (0: a still picture); watermark_rate: the
    share of clips the watermark detector finds the mark in."""
    change = float(np.mean([np.abs(np.diff(c, axis=0)).mean() for c in clips]))
    return {"frame_change": change, "watermark_rate": artifact_rate(clips)}


# -------------------------------------------------------------------------------------------------- ablations


def _schedule(
    models: WorldModels, runs: Path, settings: AblationSettings, progress: bool, device: str
) -> list[Variant]:
    variants = []
    for i, (label, (schedule, start, end)) in enumerate(SCHEDULES.items()):
        config = _motion_config(
            models, runs / f"schedule-{'abc'[i]}", settings, progress,
            optim=lambda c, s=schedule, b=start, e=end: replace(c.optim, beta_schedule=s, beta_start=b, beta_end=e),
        )  # fmt: skip
        module = _train(config, _clips(settings, config), "motion_module.safetensors")
        variants.append(_measure(label, models, module, settings, device))
    return variants


def _design(models: WorldModels, runs: Path, settings: AblationSettings, progress: bool, device: str) -> list[Variant]:
    from animatediff.formats.motion_module_files import load_motion_modules

    variants = []
    for design in ("transformer", "convolution"):
        config = _motion_config(
            models, runs / f"design-{design}", settings, progress,
            model=lambda c, d=design: replace(c.model, scratch=replace(c.model.scratch, design=d)),
        )  # fmt: skip
        module = _train(config, _clips(settings, config), "motion_module.safetensors")
        parameters = sum(p.numel() for p in load_motion_modules(module).parameters())
        variants.append(
            _measure(f"temporal {design}", models, module, settings, device, extra={"parameters": parameters})
        )
    return variants


def _adapter(models: WorldModels, runs: Path, settings: AblationSettings, progress: bool, device: str) -> list[Variant]:
    from animatediff.train.adapter import ADAPTER_FILE
    from animatediff.train.config import AdapterTrainConfig

    rate = settings.artifact_rate
    config = _motion_config(
        models, runs / "adapter", settings, progress,
        adapter=AdapterTrainConfig(enabled=True, rank=settings.adapter_rank),
        optim=lambda c: replace(c.optim, max_steps=settings.adapter_steps, batch_size=4 * settings.batch_size),
    )  # fmt: skip
    adapter = _train(config, _clips(settings, config, rate=rate), ADAPTER_FILE)
    over_adapter = _motion_config(
        models, runs / "motion-over-adapter", settings, progress,
        model=lambda c: replace(c.model, adapter_lora=str(adapter)),
    )  # fmt: skip
    module = _train(over_adapter, _clips(settings, over_adapter, rate=rate), "motion_module.safetensors")
    variants = [
        _measure(
            f"module over base + adapter, sampled at α = {alpha:g}",
            models,
            module,
            settings,
            device,
            loras=(("adapter", adapter, alpha),) if alpha else (),
        )  # fmt: skip
        for alpha in settings.alphas
    ]
    plain = _motion_config(models, runs / "motion-no-adapter", settings, progress)
    control = _train(plain, _clips(settings, plain, rate=rate), "motion_module.safetensors")
    variants.append(_measure("module over the plain base (no adapter)", models, control, settings, device))
    return variants


def _motion_lora(
    models: WorldModels, runs: Path, settings: AblationSettings, progress: bool, device: str
) -> list[Variant]:
    from animatediff.world.build import world_train_config

    motion = settings.lora_motion
    prompts = evaluation_prompts(settings.prompts, motions=(motion,))
    module = models.motion_module
    variants = [_measure(f"motion module alone ({motion})", models, module, settings, device, prompts,
                         extra={"rank": None, "reference_clips": None, "lora_parameters": 0})]  # fmt: skip
    most = max(settings.clips)
    grid = [(rank, most) for rank in settings.ranks] + [(8, n) for n in settings.clips if n != most]
    for rank, count in grid:
        stage = replace(MotionLoraStage(), steps=settings.lora_steps, rank=rank, clips=count, seed=settings.seed)
        run = runs / f"motion-lora-{motion}-r{rank}-n{count}"
        config = world_train_config(models.base, run, stage, settings.frames, progress, lora=(module, rank))
        world = replace(BASE_WORLD, motions=(motion,))
        reference = WorldVideos(count, settings.seed, world, config.data.resolution, settings.frames)
        lora = _train(config, Cycled(reference, max(count, 2000)), "motion_lora.safetensors")
        figures = {"rank": rank, "reference_clips": count, "lora_parameters": _lora_parameters(lora)}
        loras = (("motion", lora, 1.0),)
        name = f"rank {rank}, {count} clip{'s' * (count != 1)}"
        variants.append(_measure(name, models, module, settings, device, prompts, loras, figures))
    return variants


def _lora_parameters(path: Path) -> int:
    from animatediff.formats.state_dicts import read_weights

    return sum(v.numel() for v in read_weights(path, "MotionLoRA")[0].values())


class Cycled(Dataset):
    """`length` items that cycle through a few clips: one epoch holds whole batches however few the clips are."""

    def __init__(self, clips: Dataset, length: int) -> None:
        self.clips, self.length = clips, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.clips[index % len(self.clips)]

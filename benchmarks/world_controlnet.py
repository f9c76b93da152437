"""A ControlNet trained on the embedded world, and measured: does it follow its control images against the text?

1. Training (`animatediff train`'s ControlNet mode, here through its Python entry with the world's clips as a custom
   dataset): a ControlNet copied from the embedded base's UNet learns to steer the frozen base and the frozen
   embedded motion module from the Canny edges of each frame of the world's captioned clips (every motion, caption
   dropout 0.5 so that it also learns to draw from the edges alone). Resumable: a rerun continues from the newest
   checkpoint in --run-dir.
2. Measurement: rendered clips of a red circle on blue moving right, left, up and down; each clip's Canny edges
   drive a prompt that says the opposite direction ("... moving left ..." over a circle moving right). Per row it
   prints how many generated clips move as the control does and how many as the text says (`world.metrics`: the
   tracked centroid travels that way), next to the same prompts without the ControlNet (the text alone) and with a
   prompt that agrees with the control, and with a prompt that names no motion.

    python benchmarks/world_controlnet.py                    # 2500 steps (about 30 min on 2 cores), then 3 rows
    python benchmarks/world_controlnet.py --steps 0 --seeds 4   # measure the ControlNet already trained

With --kind t2i_adapter the trainer's T2I-Adapter mode learns the same task instead (a fresh full adapter over the
same frozen base and motion module, on the same clips), measured the same way:

    python benchmarks/world_controlnet.py --kind t2i_adapter --run-dir runs/world-t2i-video --steps 800
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from world_setup import trained_options
from world_video_to_video import FRAMES, SIZE, STARTS, input_clip  # the same rendered circles, from beside this file

from animatediff.formats.controlnet import load_controlnet
from animatediff.pipeline import AnimationPipeline
from animatediff.pipeline.annotators import canny
from animatediff.pipeline.controlnet import ControlNet
from animatediff.train.checkpoints import checkpoints_root, list_checkpoints
from animatediff.train.config import config_from_dict
from animatediff.train.controlnet import CONTROLNET_FOLDER
from animatediff.train.t2i_adapter import T2I_ADAPTER_FOLDER
from animatediff.train.trainer import train
from animatediff.world.datasets import WorldVideos
from animatediff.world.layout import EMBEDDED, MOTION_MODULE
from animatediff.world.loops import rendering_workers
from animatediff.world.metrics import motion_correct, track
from animatediff.world.scenes import BASE_WORLD

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def train_on_world(
    run_dir: Path, steps: int, learning_rate: float, clips: int, seed: int, controlnet: dict, caption_dropout: float
) -> Path:
    """Train (or go on training) a ControlNet or SparseCtrl encoder (the trainer's `controlnet` section) over the
    embedded base and motion module on the world's clips; the newest checkpoint."""
    config = config_from_dict(
        {
            "output_dir": str(run_dir),
            "seed": seed,
            "cpu": not torch.cuda.is_available(),
            "model": {"base": str(EMBEDDED / "base"), "init_motion_module": str(EMBEDDED / MOTION_MODULE)},
            # never flipped: a flip would contradict the captions' directions
            "data": {
                "kind": "custom",
                "num_frames": FRAMES,
                "resolution": SIZE,
                "random_flip": False,
                "num_workers": rendering_workers(),
            },
            "optim": {
                "learning_rate": learning_rate,
                "lr_scheduler": "constant_with_warmup",
                "warmup_steps": 20,
                "batch_size": 4,
                "max_steps": steps,
                "caption_dropout": caption_dropout,
            },
            "controlnet": {"enabled": True, **controlnet},
            "logging": {"report_to": "none", "every": 25},
            "checkpoint": {"every": 100, "keep_last": 1, "resume_from": "latest"},
        }
    )
    start = time.perf_counter()
    result = train(config, dataset=WorldVideos(clips, seed, BASE_WORLD, SIZE, FRAMES))
    minutes = (time.perf_counter() - start) / 60
    print(f"trained to step {result['step']} in {minutes:.1f} min; last loss {result['loss']:.4f}")
    return list_checkpoints(checkpoints_root(config))[-1]


def measuring_options(description: str, seeds: int) -> argparse.ArgumentParser:
    """A parser for a benchmark that measures the ControlNet trained here: --run-dir, --seeds (per motion),
    --sample-steps and --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run-dir", default="runs/world-controlnet", help="world_controlnet.py's training run")
    parser.add_argument("--seeds", type=int, default=seeds, help="sampling seeds per motion (0, 1, …)")
    parser.add_argument("--sample-steps", type=int, default=15, help="DDIM steps per generated clip")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def trained_controlnet(
    run_dir: str | Path, exported: Path | None = None
) -> tuple[AnimationPipeline, torch.nn.Module, Path]:
    """The embedded pipeline and the ControlNet at `exported` (None: the newest checkpoint's in `run_dir`), and
    where it was read from."""
    if exported is None:
        exported = list_checkpoints(Path(run_dir) / "checkpoints")[-1] / CONTROLNET_FOLDER
    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    return pipe, load_controlnet(exported, pipe.unet.unet), exported


def prompt(motion: str | None) -> str:
    """The caption of a red circle on blue moving `motion`; None: one that names no motion."""
    return f"a red circle moving {motion} on a blue background" if motion else "a red circle on a blue background"


def measure(
    pipe: AnimationPipeline, controlnet: torch.nn.Module | None, text_of, seeds: int, steps: int, scale: float = 1.0
) -> tuple:
    """(clips, moving as the control, moving as the text, s/clip) over every motion × seed."""
    control_wins = text_wins = clips = 0
    start = time.perf_counter()
    for motion in STARTS:
        edges = canny(input_clip(motion))
        said = text_of(motion)
        for seed in range(seeds):
            nets = [] if controlnet is None else [ControlNet(controlnet, edges, scale=scale)]
            frames = pipe(prompt(said), num_frames=FRAMES, num_inference_steps=steps, seed=seed, progress=False,
                          controlnets=nets)[0]  # fmt: skip
            path = track(frames)
            control_wins += motion_correct(path, motion)
            text_wins += said is not None and motion_correct(path, said)
            clips += 1
    return clips, control_wins, text_wins, (time.perf_counter() - start) / clips


def main() -> None:
    doc = __doc__.splitlines()[0]
    parser = trained_options(doc, "runs/world-controlnet", 2500, 4, 15, "ControlNet's conditioning scale")
    parser.add_argument("--clips", type=int, default=4000, help="distinct world clips to train on")
    parser.add_argument("--kind", choices=("controlnet", "t2i_adapter"), default="controlnet", help="what learns")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    folder = T2I_ADAPTER_FOLDER if args.kind == "t2i_adapter" else CONTROLNET_FOLDER
    exported = None
    if args.steps:
        section = {"annotator": "canny", "kind": args.kind}
        checkpoint = train_on_world(run_dir, args.steps, args.learning_rate, args.clips, 0, section, 0.5)
        exported = checkpoint / folder
    if exported is None:
        exported = list_checkpoints(run_dir / "checkpoints")[-1] / folder
    pipe, controlnet, exported = trained_controlnet(run_dir, exported)
    what = "T2I-Adapter" if args.kind == "t2i_adapter" else "ControlNet"
    print(f"\n## The world {what} ({exported}): control edges of a clip against the text\n")
    print(f"{len(STARTS)} motions × {args.seeds} seeds, {FRAMES} frames of {SIZE}×{SIZE}, ", end="")
    print(f"{args.sample_steps} DDIM steps, guidance {pipe.guidance_scale:g}, {what} scale {args.scale:g}.\n")
    against_the_text(pipe, controlnet, args, what)


def against_the_text(pipe: AnimationPipeline, model: torch.nn.Module, args: argparse.Namespace, what: str) -> None:
    """The table's rows: the control's edges with the text saying the opposite (with `model`, then the text alone),
    the same direction, and no direction; `args`' seeds, sample steps and scale."""
    print(f"| control | text | {what} | moves as the control | moves as the text | s/clip |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("opposite", lambda m: OPPOSITE[m], model),
        ("opposite", lambda m: OPPOSITE[m], None),
        ("same", lambda m: m, model),
        ("no", lambda m: None, model),
    ]
    for text, text_of, net in rows:
        n, by_control, by_text, seconds = measure(pipe, net, text_of, args.seeds, args.sample_steps, args.scale)
        used = "yes" if net is not None else "no (text alone)"
        print(f"| Canny edges of the clip | {text} direction | {used} | {by_control} of {n} | {by_text} of {n} | "
              f"{seconds:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""`animatediff` command line: one subcommand per user task. Thin: parsing here, work in the library."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from animatediff.defaults import WORLD_GUIDANCE_SCALE

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class CliError(Exception):
    """An input problem worth one line on stderr, not a traceback."""


def _torch_dtype(name: str, device: str):  # noqa: ANN202
    import torch

    if name == "auto":
        name = "fp16" if device.startswith("cuda") else "fp32"
    if name != "fp32" and not device.startswith("cuda"):
        raise CliError(f"--dtype {name} needs a GPU; on {device} use fp32")
    return getattr(torch, DTYPES[name])


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="text → animation (GIF, MP4, WebP, .npy or a folder of PNGs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--base",
        default=None,
        help="SD1.x diffusers folder or hub id; default: the embedded world model (with its module)",
    )
    p.add_argument(
        "--motion-module",
        default=None,
        help="motion module: official .ckpt/.safetensors, diffusers MotionAdapter folder, or hub id",
    )
    p.add_argument("--prompt", required=True, help="what to animate")
    p.add_argument("--negative-prompt", default="", help="what to steer away from")
    p.add_argument("--frames", type=int, default=16, help="number of frames")
    p.add_argument("--width", type=int, default=None, help="default: the base model's native size")
    p.add_argument("--height", type=int, default=None, help="default: the base model's native size")
    p.add_argument("--steps", type=int, default=25, help="denoising steps")
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance scale; default: 7.5, or 3 for a world model (the embedded one, or a base "
        "folder with world.json)",
    )
    p.add_argument(
        "--guidance-rescale",
        type=float,
        default=0.0,
        help="0-1: rescale the guided prediction toward the conditional one's spread (zero-SNR bases; 0.7 is usual)",
    )
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument(
        "--scheduler",
        default="ddim",
        help="ddim, euler, euler-ancestral, dpm++-2m, dpm++-2m-karras, dpm++-2m-sde-karras, unipc, pndm, ddpm, lcm",
    )
    p.add_argument(
        "--prediction-type",
        choices=["auto", "epsilon", "v_prediction"],
        default="auto",
        help="what the base's UNet predicts; auto: its scheduler config (epsilon if it has none)",
    )
    p.add_argument(
        "--zero-snr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the base was trained on a zero-terminal-SNR schedule (sample with trailing timesteps); "
        "default: its scheduler config",
    )
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of the written video")
    p.add_argument(
        "--output",
        default="animation.gif",
        help="file by extension (.gif, .mp4, .webp, .npy) or a directory for numbered PNGs",
    )
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: fp16 on GPU, fp32 on CPU")
    p.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="denoise in sliding windows of this many frames (for more frames than the module holds)",
    )
    p.add_argument("--context-overlap", type=int, default=4, help="frames shared by neighbouring windows")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    add_personalization_args(p)
    p.set_defaults(run=run_generate)


def add_personalization_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dreambooth",
        default=None,
        help="single-file SD1.x checkpoint (.safetensors/.ckpt, LDM layout) replacing --base's weights",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="image LoRA (kohya or diffusers/PEFT), scale default 1.0; repeatable",
    )
    p.add_argument(
        "--motion-lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="MotionLoRA (official or diffusers layout), scale default 1.0; repeatable. With the embedded world "
        "model, a motion's name picks its shipped MotionLoRA: left, right, up, down, growing, shrinking",
    )
    p.add_argument(
        "--adapter-lora",
        default=None,
        metavar="PATH[:SCALE]",
        help="v3 domain adapter LoRA on the spatial attention, scale default 1.0",
    )


def lora_specs(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    """(kind, path, scale) of the LoRAs on the command line, in the official merge order: image, adapter, motion."""
    from animatediff.formats.lora import parse_scaled_path

    specs = [("image", s) for s in args.lora] + [("adapter", args.adapter_lora)] * bool(args.adapter_lora)
    specs += [("motion", s) for s in args.motion_lora]
    parsed = [(kind, *parse_scaled_path(spec)) for kind, spec in specs]
    return [(kind, _world_motion_lora(path) if kind == "motion" else path, scale) for kind, path, scale in parsed]


def _world_motion_lora(path: str) -> str:
    """A MotionLoRA path as given, or the embedded world's MotionLoRA where the path is one of its motion names."""
    if Path(path).exists() or not path.isidentifier():
        return path
    from animatediff.defaults import WORLD_ASSETS
    from animatediff.world.evaluate import WorldModels

    try:
        loras = WorldModels.from_folder(WORLD_ASSETS).motion_loras
    except FileNotFoundError:
        loras = {}
    if path in loras:
        return str(loras[path])
    names = ", ".join(loras) or "none shipped"
    raise CliError(f"--motion-lora {path}: no such file, nor a MotionLoRA of the embedded world ({names})")


def _silence_libraries() -> None:
    """--quiet covers the loading bars and notices of transformers and diffusers too."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def _models(args: argparse.Namespace) -> tuple[str, str]:
    """--base and --motion-module, with the embedded world model where neither is given."""
    if args.base is None and args.motion_module is None:
        from animatediff.defaults import default_models

        return tuple(map(str, default_models()))
    if args.base is None or args.motion_module is None:
        raise CliError("give both --base and --motion-module, or neither (the embedded world model)")
    return args.base, args.motion_module


def run_generate(args: argparse.Namespace) -> None:
    import random

    if args.quiet:
        _silence_libraries()

    from animatediff.io.video import FORMATS, save_video
    from animatediff.pipeline import AnimationPipeline
    from animatediff.sampling import make_scheduler

    suffix = Path(args.output).suffix.lower()
    if suffix and suffix not in FORMATS:
        raise CliError(f"--output {args.output}: unsupported format {suffix}; use {', '.join(FORMATS)} or a folder")
    device = args.device or _default_device()
    dtype = _torch_dtype(args.dtype, device)
    scheduler = make_scheduler(args.scheduler)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    start = time.perf_counter()
    loras = lora_specs(args)  # a bad scale fails before minutes of loading
    base, motion_module = _models(args)
    pipe = AnimationPipeline.from_pretrained(
        base,
        motion_module,
        scheduler,
        device,
        dtype,
        dreambooth=args.dreambooth,
        prediction_type=None if args.prediction_type == "auto" else args.prediction_type,
        zero_snr=args.zero_snr,
    )
    for kind, path, scale in loras:
        pipe.add_lora(path, scale, kind=kind)
    frames = pipe(
        args.prompt,
        args.negative_prompt,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,  # None: the base's own (3 for a world model, else 7.5)
        guidance_rescale=args.guidance_rescale,
        seed=seed,
        progress=not args.quiet,
        context_length=args.context_length,
        context_overlap=args.context_overlap,
    )[0]
    path = save_video(frames, args.output, args.fps)
    if not args.quiet:
        print(f"wrote {path} ({len(frames)} frames, seed {seed}, {time.perf_counter() - start:.1f} s)")


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a motion module between the official and diffusers layouts")
    p.add_argument("source", help="official .ckpt/.safetensors, diffusers MotionAdapter folder, or hub id")
    p.add_argument("destination", help=".safetensors/.ckpt → official single file; anything else → diffusers folder")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> None:
    from animatediff.formats import convert_motion_module

    print(f"wrote {convert_motion_module(args.source, args.destination)}")


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a folder of captioned videos (or a WebVid CSV) into tar shards",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("video_folder", help="videos with a same-named .txt caption beside each, or WebVid's video folder")
    p.add_argument("out_dir", help="folder for shard-NNNNNN.tar files and their shards.json index")
    p.add_argument("--csv", default=None, help="WebVid CSV (videoid, name, page_dir) giving the captions")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--resize", type=int, default=None, help="re-encode with the shorter side at this many pixels")
    p.add_argument("--min-frames", type=int, default=16, help="skip videos with fewer frames")
    p.add_argument("--keyframe-interval", type=int, default=16, help="keyframe spacing of re-encoded videos")
    p.add_argument("--workers", type=int, default=0, help="processes checking and re-encoding videos (0: this one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    from animatediff.data import prepare_shards

    report = prepare_shards(
        args.video_folder,
        args.out_dir,
        shard_size=args.shard_size,
        csv_path=args.csv,
        resize=args.resize,
        min_frames=args.min_frames,
        keyframe_interval=args.keyframe_interval,
        num_workers=args.workers,
        progress=not args.quiet,
    )
    if not args.quiet:
        skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "none"
        print(f"wrote {report.written} clips in {len(report.shards)} shards to {args.out_dir} (skipped: {skipped})")


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run an official AnimateDiff prompt config (configs/prompts/*.yaml) unchanged",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("config", help="prompt config YAML: a list (or mapping) of entries as in the official repo")
    p.add_argument(
        "--base",
        default="models/StableDiffusion/stable-diffusion-v1-5",
        help="SD1.x diffusers folder or hub id (the official --pretrained-model-path)",
    )
    p.add_argument("--output-dir", default="samples", help="runs go to <output-dir>/<config name>-<time>/")
    p.add_argument("--W", type=int, default=None, help="width unless an entry sets W; default: the base's native size")
    p.add_argument("--H", type=int, default=None, help="height unless an entry sets H; default: the base's native size")
    p.add_argument("--L", type=int, default=16, help="frames unless an entry sets L")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: fp16 on GPU, fp32 on CPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(run=run_run)


def run_run(args: argparse.Namespace) -> None:
    from animatediff.model_cache import ModelCache
    from animatediff.prompt_config import load_prompt_config, run_prompt_config

    load_prompt_config(args.config)  # a bad config fails before any model loads
    device = args.device or _default_device()
    cache = ModelCache(device, _torch_dtype(args.dtype, device))
    out = run_prompt_config(
        args.config,
        args.base,
        args.output_dir,
        cache,
        width=args.W,
        height=args.H,
        frames=args.L,
        fps=args.fps,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(f"wrote {out}")


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a motion module or MotionLoRA (one GPU, or with accelerate launch)")
    p.add_argument("config", help="training config YAML (see configs/train/)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, e.g. optim.learning_rate=5e-5 data.num_workers=8",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> None:
    from animatediff.train import Trainer, load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return
    result = Trainer(config).train()
    if result["checkpoint"] is not None:
        print(f"trained to step {result['step']}; last checkpoint {result['checkpoint']}")


def add_world(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("world", help="the project's own small world: rebuild its models from scratch")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser(
        "build",
        help="data → VAE → base model → motion module → MotionLoRAs → personalized models → look classifier, resumable",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("out_dir", help="folder for the build (base/, motion_module.safetensors, build.json)")
    b.add_argument("--quick", action="store_true", help="a tiny smoke build (seconds) instead of the full recipe")
    b.add_argument(
        "--ship", default=None, metavar="FOLDER", help="afterwards, write the fp16 weights the package embeds to FOLDER"
    )
    b.add_argument(
        "--images-only",
        action="store_true",
        help="stop after the image stages (base, personalized models, look classifier), to check them with "
        "`world probe` and `world eval` before the motion stages; a later run without it goes on from there",
    )
    b.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one recipe setting (repeatable), e.g. --set image.vae.object_weight=10 --set motion.steps=3000; "
        "the keys are the fields of WorldRecipe (animatediff/world/build.py), dotted",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    b.set_defaults(run=run_world_build)
    r = actions.add_parser(
        "probe",
        help="which caption words a world base reads: its loss rise when one word is swapped; and, where the build "
        "has a look classifier, which looks survive its VAE (seconds)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument(
        "--models", default=None, metavar="FOLDER", help="a world build folder (its base/); default: the embedded one"
    )
    r.add_argument("--images", type=int, default=48, help="renderings of moving objects to measure on")
    r.add_argument(
        "--motion-module",
        action="store_true",
        help="measure base + the build's motion module on whole clips (as many as --images) instead of the base alone",
    )
    r.set_defaults(run=run_world_probe)
    e = actions.add_parser(
        "eval",
        help="measure motion and consistency of generated world animations",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    e.add_argument(
        "--models",
        default=None,
        metavar="FOLDER",
        help="a world build folder (base/, motion module, personalized/, look classifier; one built with "
        "--images-only gets the rows that need no motion module); default: the embedded one",
    )
    e.add_argument("--prompts", type=int, default=12, help="prompts per model, cycling through the measured motions")
    e.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    e.add_argument("--steps", type=int, default=25, help="denoising steps")
    e.add_argument("--guidance-scale", type=float, default=WORLD_GUIDANCE_SCALE, help="classifier-free guidance scale")
    e.add_argument("--no-text2video-zero", action="store_true", help="leave out the training-free Text2Video-Zero rows")
    e.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    e.add_argument("--output-dir", default="world-eval", help="where eval.md, eval.json and samples.png go")
    e.set_defaults(run=run_world_eval)


def run_world_build(args: argparse.Namespace) -> None:
    from animatediff.world.build import WorldRecipe, build_world, override_recipe, quick_recipe, ship

    recipe = quick_recipe() if args.quick else WorldRecipe()
    if args.overrides:
        try:
            recipe = override_recipe(recipe, args.overrides)
        except ValueError as err:
            raise CliError(str(err)) from None
    if args.quiet:
        # progress=False on the recipe silences every stage (the frozen stage configs follow it)
        recipe.progress = False
        recipe.image = replace(
            recipe.image,
            vae=replace(recipe.image.vae, progress=False),
            unet=replace(recipe.image.unet, progress=False),
        )
    if args.images_only and args.ship:
        raise CliError("--ship needs the motion module, which --images-only stops before")
    figures = build_world(args.out_dir, recipe, images_only=args.images_only)
    if args.ship:
        ship(args.out_dir, args.ship)
    if not args.quiet:
        minutes = {k: round(v["minutes"], 1) for k, v in figures.items() if isinstance(v, dict) and "minutes" in v}
        print(f"built {args.out_dir}: minutes per stage {minutes}")


def run_world_probe(args: argparse.Namespace) -> None:
    from animatediff.defaults import WORLD_ASSETS
    from animatediff.world.evaluate import WorldModels
    from animatediff.world.probes import (
        PROBED_MOTIONS,
        reliance_table,
        round_trip_table,
        vae_round_trip,
        word_reliance,
    )

    _silence_libraries()
    folder = Path(args.models or WORLD_ASSETS)
    try:
        models = WorldModels.from_folder(folder)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    if args.motion_module and models.motion_module is None:
        raise CliError(f"{folder} holds no motion module (motion_module.safetensors)")
    module = models.motion_module if args.motion_module else None
    if models.looks is not None and module is None:
        print(round_trip_table(vae_round_trip(models.base, models.looks, args.images)), end="\n\n")
    for family, motions in PROBED_MOTIONS.items():
        print(f"Caption words, on {'clips' if module else 'renderings'} of {family}:", end="\n\n")
        print(
            reliance_table(word_reliance(models.base, args.images, motion_module=module, motions=motions)), end="\n\n"
        )


def run_world_eval(args: argparse.Namespace) -> None:
    import json
    from dataclasses import asdict

    import numpy as np
    from PIL import Image

    from animatediff.defaults import WORLD_ASSETS
    from animatediff.world.evaluate import WorldModels, evaluate_world, table

    _silence_libraries()
    try:
        models = WorldModels.from_folder(args.models or WORLD_ASSETS)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    result = evaluate_world(
        models,
        args.prompts,
        args.seeds,
        args.steps,
        args.guidance_scale,
        text2video_zero=not args.no_text2video_zero,
        device=args.device or _default_device(),
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = table(result.rows)
    (out / "eval.md").write_text(text + "\n")
    (out / "eval.json").write_text(json.dumps([asdict(r) for r in result.rows], indent=2) + "\n")
    width = max(sheet.shape[1] for sheet in result.sheets)
    padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=1.0) for s in result.sheets]
    Image.fromarray((np.concatenate(padded) * 255).round().astype(np.uint8)).save(out / "samples.png")
    print(text)
    for r in result.rows:
        print(f"{r.name}: per motion {', '.join(f'{m} {v:.2f}' for m, v in r.per_motion.items())}")
        if r.look_accuracy is not None:
            by_shape = ", ".join(f"{s} {v:.2f}" for s, v in r.look_by_shape.items())
            print(f"  look: shape {r.shape_accuracy:.2f}, texture {r.texture_accuracy:.2f}; by asked shape {by_shape}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animatediff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate(sub)
    add_convert(sub)
    add_run(sub)
    add_prepare(sub)
    add_train(sub)
    add_world(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CliError, FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"animatediff {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

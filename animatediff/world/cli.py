"""`animatediff world build | probe | eval | check | ablate`, and the embedded world model that `animatediff generate`
falls back on.

The main command line mounts these (`add_world`); nothing outside the command line imports this module.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from animatediff.cli.options import HelpFormatter, device_options, quiet_option, resolve_device, silence_libraries
from animatediff.errors import InputError, InputNotFound
from animatediff.world.layout import EMBEDDED, WORLD_GUIDANCE_SCALE, WorldModels, embedded_models


def embedded_base_and_module() -> tuple[str, str]:
    """(base folder, motion-module file) of the embedded world model."""
    models = embedded_models()
    return str(models.base), str(models.motion_module)


def embedded_motion_lora(name: str) -> str:
    """The embedded world's MotionLoRA of a motion ('left', 'growing', ...)."""
    try:
        loras = WorldModels.from_folder(EMBEDDED).motion_loras
    except InputNotFound:
        loras = {}
    if name not in loras:
        names = ", ".join(loras) or "none shipped"
        raise InputNotFound(f"--motion-lora {name}: no such file, nor a MotionLoRA of the embedded world ({names})")
    return str(loras[name])


def _world_models(folder: str | None) -> WorldModels:
    return WorldModels.from_folder(folder or EMBEDDED)


def add_world(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "world",
        help="the project's own small world: rebuild its models from scratch, probe and evaluate them",
        description="The embedded world model: build it from scratch, probe what its base reads, evaluate its "
        "animations.",
        formatter_class=HelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser(
        "build",
        help="data → VAE → base model → personalized models → look classifier → motion module → MotionLoRAs, resumable",
        formatter_class=HelpFormatter,
        parents=[quiet_option()],
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
        "the keys are the recipe's dotted fields (image.model.*, image.vae.*, image.unet.*, motion.*, "
        "motion_loras.*, looks.*, threads); an unknown one is named with the closest",
    )
    b.set_defaults(run=run_world_build)
    r = actions.add_parser(
        "probe",
        help="which caption words a world base reads: its loss rise when one word is swapped; and, where the build "
        "has a look classifier, which looks survive its VAE (seconds)",
        description="How much a world base's denoising loss rises when one caption word is swapped (which words it "
        "reads), and which looks its VAE gives back.",
        formatter_class=HelpFormatter,
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
        help="measure motion, consistency and looks of generated world animations",
        description="Generate world animations with every model of a build (and with frames independent, "
        "MotionLoRAs, Text2Video-Zero) and measure them: eval.md, eval.json, samples.png.",
        formatter_class=HelpFormatter,
        parents=[device_options()],
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
    e.add_argument("--output-dir", default="world-eval", help="where eval.md, eval.json and samples.png go")
    e.set_defaults(run=run_world_eval)
    c = actions.add_parser(
        "check",
        help="is a build sound: its probe and evaluation figures against the embedded build's, each within a band",
        description="Compare a build's `world probe` figures and `world eval` table (12 prompts × 2 seeds, as the "
        "embedded build was measured) with the embedded build's, one line per figure; exit 1 when any falls outside "
        "its band. A rebuild on another CPU or other library versions differs in its bits; this says whether it "
        "still does what the embedded build does.",
        formatter_class=HelpFormatter,
        parents=[device_options()],
    )
    c.add_argument("build", metavar="BUILD", help="a world build folder (base/, motion module, personalized/ ...)")
    c.add_argument(
        "--eval",
        default=None,
        metavar="FILE",
        help="the build's eval.json or eval.md from an earlier `world eval` (12 prompts × 2 seeds); default: "
        "evaluate now (about 40 minutes on a 2-core CPU) into BUILD/eval",
    )
    c.add_argument("--images", type=int, default=48, help="renderings each probe measures, on both builds")
    c.set_defaults(run=run_world_check)
    a = actions.add_parser(
        "ablate",
        help="rerun one of the paper's ablations on the world: schedule, adapter, design or motion-lora",
        description="Train an ablation's variants at one budget over the world's frozen base and measure them on the "
        "same prompts and seeds: schedule (motion modules on SD's scaled-linear, AnimateDiff's linear and DDPM's "
        "linear betas), adapter (a domain adapter on watermarked videos, the module over base + adapter sampled at "
        "each α), design (temporal transformer against temporal convolution), motion-lora (MotionLoRA ranks and "
        "reference-clip counts for one motion). Writes NAME.md and NAME.json; a rerun goes on where one stopped.",
        formatter_class=HelpFormatter,
        parents=[device_options(), quiet_option()],
    )
    a.add_argument("name", metavar="NAME", help="schedule, adapter, design or motion-lora")
    a.add_argument("--models", default=None, metavar="FOLDER", help="a world build folder; default: the embedded one")
    a.add_argument("--output-dir", default=None, help="where the table and the runs go; default: ablations/NAME")
    a.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the budget (repeatable), e.g. --set steps=300 --set ranks=[2,8]; the keys are "
        "AblationSettings' fields (steps, batch_size, frames, adapter_steps, adapter_rank, artifact_rate, alphas, "
        "lora_steps, lora_motion, ranks, clips, prompts, seeds, eval_steps, seed)",
    )
    a.add_argument("--quick", action="store_true", help="a seconds-long budget that checks the plumbing, not findings")
    a.set_defaults(run=run_world_ablate)


def run_world_build(args: argparse.Namespace) -> None:
    silence_libraries()  # before the stages' imports, which bring transformers' image-processor notices
    from animatediff.world.build import build_world
    from animatediff.world.provenance import describe, environment
    from animatediff.world.recipe import WorldRecipe, override_recipe, quick_recipe, silenced
    from animatediff.world.ship import ship

    if args.images_only and args.ship:
        raise InputError("--ship needs the motion module, which --images-only stops before")
    recipe = quick_recipe() if args.quick else WorldRecipe()
    if args.overrides:
        recipe = override_recipe(recipe, args.overrides)
    if args.quiet:
        recipe = silenced(recipe)
    else:
        print(f"building {args.out_dir} on {describe(environment() | {'threads': recipe.threads})}", flush=True)
    figures = build_world(args.out_dir, recipe, images_only=args.images_only)
    if args.ship:
        ship(args.out_dir, args.ship)
    if not args.quiet:
        minutes = {k: round(v["minutes"], 1) for k, v in figures.items() if isinstance(v, dict) and "minutes" in v}
        print(f"built {args.out_dir}: minutes per stage {minutes}")


def run_world_probe(args: argparse.Namespace) -> None:
    from animatediff.world.probes import (
        PROBED_MOTIONS,
        reliance_table,
        round_trip_table,
        vae_round_trip,
        word_reliance,
    )

    silence_libraries()
    models = _world_models(args.models)
    if args.motion_module and models.motion_module is None:
        raise InputNotFound(f"{Path(models.base).parent} holds no motion module (motion_module.safetensors)")
    module = models.motion_module if args.motion_module else None
    if models.looks is not None and module is None:
        print(round_trip_table(vae_round_trip(models.base, models.looks, args.images)), end="\n\n")
    for family, motions in PROBED_MOTIONS.items():
        print(f"Caption words, on {'clips' if module else 'renderings'} of {family}:", end="\n\n")
        print(
            reliance_table(word_reliance(models.base, args.images, motion_module=module, motions=motions)), end="\n\n"
        )


def run_world_eval(args: argparse.Namespace) -> None:
    from animatediff.world.evaluate import evaluate_world, row_details, write_report

    silence_libraries()
    models = _world_models(args.models)
    device, _ = resolve_device(args)
    result = evaluate_world(
        models,
        args.prompts,
        args.seeds,
        args.steps,
        args.guidance_scale,
        text2video_zero=not args.no_text2video_zero,
        device=device,
    )
    print(write_report(result, args.output_dir))
    for row in result.rows:
        print("\n".join(row_details(row)))


def run_world_check(args: argparse.Namespace) -> int:
    from animatediff.world import check
    from animatediff.world.evaluate import evaluate_world, write_report

    silence_libraries()
    models = _world_models(args.build)
    if args.eval is None:
        device, _ = resolve_device(args)
        result = evaluate_world(models, device=device)  # the embedded build's settings: 12 × 2, 25 steps, guidance 3
        write_report(result, Path(args.build) / "eval")
        table = check.read_eval_table(Path(args.build) / "eval" / "eval.json")
    else:
        table = check.read_eval_table(args.eval)
    figures = check.probe_figures(check.probe(EMBEDDED / "base", args.images), check.probe(models.base, args.images))
    figures += check.eval_figures(check.embedded_eval_table(), table)
    print("\n".join(f.line() for f in figures))
    outside = [f for f in figures if not f.within]
    print(f"{len(figures) - len(outside)} of {len(figures)} figures within their bands")
    return 1 if outside else 0


def run_world_ablate(args: argparse.Namespace) -> None:
    silence_libraries()
    from animatediff.config_values import dataclass_from_dict, merge, parse_overrides
    from animatediff.world.ablate import AblationSettings, ablation_table, quick_settings, run_ablation

    base = asdict(quick_settings() if args.quick else AblationSettings())
    settings = dataclass_from_dict(AblationSettings, merge(base, parse_overrides(args.overrides)))
    device, _ = resolve_device(args)
    out = args.output_dir or str(Path("ablations") / args.name)
    result = run_ablation(args.name, out, settings, args.models or EMBEDDED, not args.quiet, device)
    print(ablation_table(result))
    if not args.quiet:
        print(f"{args.name}: {result.minutes:.1f} minutes; {out}/{args.name}.md and .json")

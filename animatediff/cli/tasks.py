"""`animatediff convert`, `prepare`, `run` and `train`: one subcommand per task, the work in the library."""

from __future__ import annotations

import argparse

from animatediff.cli.memory_options import add_memory_args, memory_from_args
from animatediff.cli.options import (
    DTYPES,
    HelpFormatter,
    device_options,
    quiet_option,
    resolve_device,
    silence_libraries,
)


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a motion module or SparseCtrl encoder between the official and diffusers layouts",
        description="Convert a motion module or a SparseCtrl encoder: an official single file (.ckpt/.safetensors) "
        "to a diffusers folder (MotionAdapter, SparseControlNetModel), or back.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "source", help="official .ckpt/.safetensors, diffusers MotionAdapter or SparseControlNetModel folder, or hub id"
    )
    p.add_argument("destination", help=".safetensors/.ckpt → official single file; anything else → diffusers folder")
    p.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="precision of the written weights; default: the source's own (fp16 in, fp16 out)",
    )
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> None:
    import torch

    from animatediff.formats import convert_motion_module
    from animatediff.formats.sparse_ctrl import convert_sparse_ctrl, is_sparse_ctrl
    from animatediff.hub import resolve_path

    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    source = resolve_path(args.source, "motion module or SparseCtrl")
    convert = convert_sparse_ctrl if is_sparse_ctrl(source) else convert_motion_module
    print(f"wrote {convert(source, args.destination, dtype)}")


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a folder of captioned videos (or a WebVid CSV) into tar shards",
        description="Check, optionally re-encode, and pack training videos with their captions into tar shards "
        "that `animatediff train` streams (data.kind=shards).",
        formatter_class=HelpFormatter,
        parents=[quiet_option()],
    )
    p.add_argument("video_folder", help="videos with a same-named .txt caption beside each, or WebVid's video folder")
    p.add_argument("out_dir", help="folder for shard-NNNNNN.tar files and their shards.json index")
    p.add_argument("--csv", default=None, help="WebVid CSV (videoid, name, page_dir) giving the captions")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    p.add_argument("--resize", type=int, default=None, help="re-encode with the shorter side at this many pixels")
    p.add_argument("--min-frames", type=int, default=16, help="skip videos with fewer frames")
    p.add_argument("--keyframe-interval", type=int, default=16, help="keyframe spacing of re-encoded videos")
    p.add_argument("--workers", type=int, default=0, help="processes checking and re-encoding videos (0: this one)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a folder that is not empty, removing the .tar shards and shards.json in it first",
    )
    p.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> None:
    import logging

    from animatediff.data import prepare_shards

    # Skipped videos are logged as they are met; --quiet prints nothing at all.
    data_logger = logging.getLogger("animatediff.data")
    level = data_logger.level
    if args.quiet:
        data_logger.setLevel(logging.ERROR)
    try:
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
            overwrite=args.overwrite,
        )
    finally:
        data_logger.setLevel(level)
    if not args.quiet:
        print(f"wrote {report.written} clips in {len(report.shards)} shards to {args.out_dir} ({report.summary()})")


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run an official AnimateDiff prompt config (configs/prompts/*.yaml) or a prompt-travel config unchanged",
        description="Draw every prompt of an official prompt config, in the official output layout "
        "(<output-dir>/<config name>-<time>/sample/*.gif (or an entry's output_format), sample.gif, config.yaml). "
        "Models stay loaded between entries. On several GPUs, `accelerate launch --num_processes N -m animatediff "
        "run CONFIG` deals the videos over the processes, into the one run folder.",
        formatter_class=HelpFormatter,
        parents=[device_options(), quiet_option()],
    )
    p.add_argument(
        "config",
        help="prompt config YAML: a list (or mapping) of entries as in the official repo; or an "
        "animatediff-cli-prompt-travel config file (JSON), one entry",
    )
    p.add_argument(
        "--base",
        default=None,
        help="SD1.x or SDXL diffusers folder or hub id (the official --pretrained-model-path) for entries that name "
        "no base; default: the embedded world model's",
    )
    p.add_argument("--output-dir", default="samples", help="runs go to <output-dir>/<config name>-<time>/")
    p.add_argument("--W", type=int, default=None, help="width unless an entry sets W; default: the base's native size")
    p.add_argument("--H", type=int, default=None, help="height unless an entry sets H; default: the base's native size")
    p.add_argument("--L", type=int, default=16, help="frames unless an entry sets L")
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of the written GIFs")
    add_memory_args(p)  # small GPUs and speed: --vae-slicing, --vae-tiling, --offload, --ff-chunk, --compile
    p.set_defaults(run=run_run)


def run_run(args: argparse.Namespace) -> None:
    if args.quiet:
        silence_libraries()

    from animatediff.io.outputs import check_output_folder
    from animatediff.model_cache import ModelCache
    from animatediff.prompt_config import load_prompt_config, run_prompt_config

    # A bad config, or an output folder that cannot be written, fails before any model loads.
    load_prompt_config(args.config)
    check_output_folder(args.output_dir, "--output-dir")
    base = args.base
    if base is None:
        from animatediff.world.cli import embedded_base_and_module

        base = embedded_base_and_module()[0]
    from animatediff.process_share import process_share

    share = process_share()  # one of several processes (accelerate launch): its own GPU
    device, dtype = resolve_device(args)
    memory = memory_from_args(args, device)  # small-GPU and speed options, checked before any model loads
    cache = ModelCache(share.device(device), dtype, memory=memory)
    out = run_prompt_config(
        args.config,
        base,
        args.output_dir,
        cache,
        width=args.W,
        height=args.H,
        frames=args.L,
        fps=args.fps,
        progress=not args.quiet,
    )
    if not args.quiet and share.is_main:
        print(f"wrote {out}")


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a motion module or MotionLoRA (one GPU, or with accelerate launch)",
        description="Train a motion module (or a MotionLoRA) over a frozen base, as the paper does; resumable, "
        "one GPU or many (accelerate launch -m animatediff train CONFIG).",
        formatter_class=HelpFormatter,
    )
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

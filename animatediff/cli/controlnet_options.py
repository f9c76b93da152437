"""`generate`'s ControlNet options (`--controlnet MODEL[:SCALE]` with its `--control-video` or `--control-frames`,
`--control-from-video`, `--control-start`, `--control-end`, `--guess-mode`; `--keyframe-controlnet MODEL=DIR` with
`--control-spread` and `--no-control-loop`): the models named, the control videos read and the keyframe folders
found before any model loads; the ControlNets (and the keyframe images) loaded after the base."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.control_inputs import ControlInput
    from animatediff.pipeline.controlnet import ControlNet

ANNOTATORS = ("canny", "lineart", "color", "inpaint", "none")
"""`pipeline.annotators.ANNOTATORS`, here so that building the parser imports no torch."""
FLAGS = {
    "controlnet": "--controlnet",
    "video": "--control-video",
    "frames": "--control-frames",
    "annotator": "--control-from-video",
    "start": "--control-start",
    "end": "--control-end",
    "guess_mode": "--guess-mode",
}
"""What errors call each setting (`pipeline.control_inputs.ENTRY_KEYS` on the command line)."""


class _Source(argparse.Action):
    """--control-video and --control-frames append to one list, so that the n-th of either is the n-th ControlNet's."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        sources = list(getattr(namespace, self.dest) or [])
        sources.append((self.const, values))
        setattr(namespace, self.dest, sources)


def add_controlnet_args(p: argparse.ArgumentParser) -> None:
    """ControlNet (Zhang et al. 2023) on every frame: each --controlnet with its control video, in order."""
    p.add_argument(
        "--controlnet",
        action="append",
        default=[],
        metavar="MODEL[:SCALE]",
        help="ControlNet for an SD1.5 base: a diffusers folder or hub id (e.g. lllyasviel/control_v11p_sd15_openpose) "
        "or a single .pth/.safetensors file (e.g. control_v11p_sd15_openpose.pth), scale 1.0 unless given; "
        "repeatable, each with its own --control-video or --control-frames, in the same order",
    )
    p.add_argument(
        "--control-video",
        action=_Source,
        const="video",
        dest="control_sources",
        default=[],
        metavar="VIDEO",
        help="a ControlNet's control images: a video file, GIF, WebP or .npy; its first --frames frames, scaled to "
        "cover --width × --height and center-cropped",
    )
    p.add_argument(
        "--control-frames",
        action=_Source,
        const="frames",
        dest="control_sources",
        metavar="DIR",
        help="a ControlNet's control images as a folder of PNG/JPG frames (in name order), as --control-video",
    )
    p.add_argument(
        "--control-from-video",
        action="append",
        choices=ANNOTATORS,
        default=[],
        help="how control images are made of the control video (with OpenCV: pip install 'animatediff[control]'): "
        "canny (Canny edges), lineart (ControlNet's model-free line art, lineart_standard), color (the T2I colour "
        "adapter's 64× colour grid), inpaint (the frames blanked where --video-mask is white: ControlNet inpaint's "
        "condition), or none (it holds them already: poses, depth maps, edges made elsewhere); once "
        "for all ControlNets or once each; default: none. Annotators that need models (OpenPose, depth) are not here",
    )
    p.add_argument(
        "--control-start",
        action="append",
        type=float,
        default=[],
        metavar="F",
        help="fraction of the steps after which the ControlNet acts, 0-1; once for all or once each; default: 0",
    )
    p.add_argument(
        "--control-end",
        action="append",
        type=float,
        default=[],
        metavar="F",
        help="fraction of the steps after which the ControlNet stops, 0-1; once for all or once each; default: 1",
    )
    p.add_argument(
        "--guess-mode",
        action="store_true",
        help="ControlNet guess mode: it sees only the prompted half of the guided batch, its residuals scaled from "
        "0.1 (shallow) to 1 (middle), so the control images speak with little or no prompt (guidance 3-5 suits)",
    )


def add_keyframe_controlnet_args(p: argparse.ArgumentParser) -> None:
    """ControlNets with control images at some frames only, spread to their neighbours (`keyframe_controlnets`)."""
    p.add_argument(
        "--keyframe-controlnet",
        action="append",
        default=[],
        metavar="MODEL[:SCALE]=DIR",
        help="a ControlNet steering from the PNGs in DIR named by their frame (0000.png, 16.png), each image's "
        "residuals reaching the frames around it by --control-spread, as animatediff-cli-prompt-travel's "
        "controlnet_map; repeatable",
    )
    p.add_argument(
        "--control-spread",
        type=float,
        nargs="+",
        default=[],
        metavar="S",
        help="the scales of a keyframe's residuals 1, 2, … frames away (prompt-travel's control_scale_list), "
        "e.g. 0.5 0.25; default: none (the keyframes only)",
    )
    p.add_argument(
        "--no-control-loop",
        action="store_true",
        help="keyframe ControlNets: the spread stops at the clip's ends instead of wrapping around them",
    )


def keyframe_items_from_args(args: argparse.Namespace) -> list[dict]:
    """--keyframe-controlnet as checked `keyframe_controlnets` items (`pipeline.keyframe_control_inputs`)."""
    from animatediff.errors import InputError
    from animatediff.pipeline.control_inputs import parse_controlnet
    from animatediff.pipeline.keyframe_control_inputs import check_keyframe_control_keys

    if (args.control_spread or args.no_control_loop) and not args.keyframe_controlnet:
        raise InputError("--control-spread and --no-control-loop are for --keyframe-controlnet")
    items = []
    for text in args.keyframe_controlnet:
        model, sep, folder = text.rpartition("=")
        if not sep or not model or not folder:
            raise InputError(f"--keyframe-controlnet {text!r}: give MODEL[:SCALE]=DIR, e.g. openpose.pth:0.8=poses/")
        if not Path(folder).expanduser().is_dir():
            raise InputError(f"--keyframe-controlnet {text!r}: {folder} is not a folder of control images")
        path, scale = parse_controlnet(model)
        items.append({"model": path, "images": folder, "scale": scale, "spread": list(args.control_spread),
                      "loop": not args.no_control_loop})  # fmt: skip
    values = {"keyframe_controlnets": items}
    check_keyframe_control_keys(values, "--keyframe-controlnet")
    return values["keyframe_controlnets"]


def controlnet_inputs_from_args(args: argparse.Namespace) -> list[ControlInput]:
    """The ControlNets the options name, each with its control video read: everything checked before any model
    loads (the options go together, the values are in range, the files exist, OpenCV for canny, the videos decode
    and have --frames frames)."""
    from animatediff.pipeline.control_inputs import check_inpaint_mask, entry_specs, read_control_inputs

    sources = args.control_sources or []
    kinds = {kind for kind, _ in sources}
    videos = [path if kind == "video" else "" for kind, path in sources] if "video" in kinds else []
    folders = [path if kind == "frames" else "" for kind, path in sources] if "frames" in kinds else []
    specs = entry_specs(
        args.controlnet, videos, folders, args.control_from_video, args.control_start, args.control_end,
        args.guess_mode, names=FLAGS,
    )  # fmt: skip
    check_inpaint_mask([spec.annotator for spec in specs], args.video_mask, "--control-from-video")
    return read_control_inputs(specs, args.frames)


def controlnets_for(inputs: list[ControlInput], pipe: AnimationPipeline, args: argparse.Namespace) -> list[ControlNet]:
    """The ControlNets of `inputs`, loaded for `pipe`'s base, their control images at --width × --height."""
    if not inputs:
        return []
    from animatediff.pipeline.control_inputs import load_controlnets

    return load_controlnets(inputs, pipe, args.height, args.width, mask=args.video_mask)

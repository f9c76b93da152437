"""`generate`'s SparseCtrl options (`--sparsectrl MODEL[:SCALE]`, `--keyframe INDEX:IMAGE`, `--sparsectrl-start`,
`--sparsectrl-end`): the model named and the keyframe images read before any model loads, the encoder loaded
after the base, the images fitted to the output size (with a note when they had another)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.sparse_ctrl import SparseCtrl


def add_sparse_ctrl_args(p: argparse.ArgumentParser) -> None:
    """SparseCtrl (Guo et al. 2023): keyframes steer the clip; a keyframe at 0 is image-to-video."""
    p.add_argument(
        "--sparsectrl",
        default=None,
        metavar="MODEL[:SCALE]",
        help="SparseCtrl encoder for an SD1.5 base: an official file (v3_sd15_sparsectrl_rgb.ckpt takes pictures, "
        "v3_sd15_sparsectrl_scribble.ckpt scribbles), a diffusers folder or hub id (guoyww/animatediff-sparsectrl-"
        "rgb); scale 1.0 unless given; default with --keyframe and the embedded world models: their RGB encoder",
    )
    p.add_argument(
        "--keyframe",
        action="append",
        default=[],
        metavar="INDEX:IMAGE",
        help="a frame the SparseCtrl encoder is given (repeatable): 0:first.png is image-to-video, 0:a.png "
        "15:b.png goes from one to the other; a negative index counts from the end (--keyframe=-1:last.png)",
    )
    p.add_argument(
        "--sparsectrl-start",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of the steps after which the SparseCtrl encoder acts, 0-1",
    )
    p.add_argument(
        "--sparsectrl-end",
        type=float,
        default=1.0,
        metavar="F",
        help="fraction of the steps after which the SparseCtrl encoder stops, 0-1",
    )


@dataclass
class SparseCtrlInput:
    """What the options name, read: the model, its scale and range, and the keyframe images at their own size."""

    model: str
    scale: float
    start: float
    end: float
    keyframes: dict[int, np.ndarray]


def parse_keyframe(text: str, num_frames: int) -> tuple[int, str]:
    """'INDEX:IMAGE' → (index within the clip, image path); a negative index counts from the end."""
    index, sep, path = text.partition(":")
    try:
        frame = int(index)
    except ValueError:
        frame = None
    if not sep or frame is None or not path:
        raise InputError(f"--keyframe {text!r}: expected INDEX:IMAGE, e.g. 0:first.png")
    position = frame + num_frames if frame < 0 else frame
    if not 0 <= position < num_frames:
        raise InputError(f"--keyframe {text!r}: frame {frame} is outside the clip of {num_frames} frames (--frames)")
    return position, path


def sparse_ctrl_input_from_args(args: argparse.Namespace) -> SparseCtrlInput | None:
    """The SparseCtrl the options name, its keyframes read: everything checked before any model loads."""
    from animatediff.formats.lora import parse_scaled_path
    from animatediff.hub import check_reference
    from animatediff.io.video_input import read_image
    from animatediff.pipeline.control_inputs import check_control_range

    if args.sparsectrl is None:
        if not args.keyframe:
            return None
        embedded = _embedded_encoder(args)
        if embedded is None:
            raise InputError("--keyframe without --sparsectrl (the SparseCtrl encoder that takes it)")
        args.sparsectrl = embedded
    if not args.keyframe:
        raise InputError("--sparsectrl without --keyframe: give at least one, e.g. --keyframe 0:first.png")
    try:
        model, scale = parse_scaled_path(args.sparsectrl)
    except InputError:
        raise InputError(f"--sparsectrl {args.sparsectrl!r}: the scale after ':' is not a number") from None
    check_control_range(args.sparsectrl_start, args.sparsectrl_end, scale)
    check_reference(model, "SparseCtrl")
    keyframes = {}
    for text in args.keyframe:
        index, path = parse_keyframe(text, args.frames)
        if index in keyframes:
            raise InputError(f"--keyframe {text!r}: frame {index} is given twice")
        keyframes[index] = read_image(path, "keyframe image")
    return SparseCtrlInput(os.fspath(model), scale, args.sparsectrl_start, args.sparsectrl_end, keyframes)


def _embedded_encoder(args: argparse.Namespace) -> str | None:
    """The embedded world's RGB SparseCtrl encoder, where the embedded models animate (no --base, no
    --motion-module) and the package ships one; else None."""
    if args.base is not None or args.motion_module is not None:
        return None
    from animatediff.world.layout import EMBEDDED, SPARSECTRL_RGB

    path = EMBEDDED / SPARSECTRL_RGB
    return os.fspath(path) if path.is_file() else None


def sparse_ctrls_for(
    given: SparseCtrlInput | None, pipe: AnimationPipeline, args: argparse.Namespace
) -> list[SparseCtrl]:
    """The SparseCtrl of `given`, loaded for `pipe`'s base, its keyframes fitted to --width × --height."""
    if given is None:
        return []
    from animatediff.formats.sparse_ctrl import load_sparse_ctrl
    from animatediff.io.video_input import fit_frames
    from animatediff.pipeline.sparse_ctrl import SparseCtrl

    height, width = args.height or pipe.native_size, args.width or pipe.native_size
    keyframes = {}
    for index, image in given.keyframes.items():
        if image.shape[:2] != (height, width) and not args.quiet:
            print(
                f"note: keyframe {index} is {image.shape[1]}×{image.shape[0]}; scaled to cover {width}×{height} and "
                "center-cropped",
                file=sys.stderr,
            )
        keyframes[index] = fit_frames(image[None], height, width)[0]
    model = load_sparse_ctrl(given.model, pipe.unet.config, pipe.dtype)
    return [SparseCtrl(model, keyframes, given.scale, given.start, given.end)]

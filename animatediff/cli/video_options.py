"""`generate`'s video-to-video options (`--video INPUT --strength S --video-stride N`), checked and the input read
before any model loads."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from animatediff.sampling.free_init import FreeInit

DEFAULT_STRENGTH = 0.8  # pipeline.video_start.DEFAULT_STRENGTH, here so that building the parser imports no torch
OPTIONS = ("--frames", "--video-stride")  # what an input with too few frames suggests changing


def add_video_args(p: argparse.ArgumentParser) -> None:
    """Video-to-video (SDEdit on a clip, as diffusers' AnimateDiffVideoToVideoPipeline): the input's frames are
    encoded, noised to the strength's first timestep and denoised under the prompt."""
    p.add_argument(
        "--video",
        default=None,
        metavar="INPUT",
        help="video-to-video: start from this video (a video file, GIF, WebP, folder of PNG/JPG frames in name order "
        "(numbered without gaps where named by number alone), "
        "or .npy), --frames of its frames taken every --video-stride-th, scaled to cover --width × --height and "
        "center-cropped",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=None,
        metavar="S",
        help="with --video, 0-1: how much of the input is re-drawn (the fraction of --steps run, from that noise "
        f"level on; 1 = from noise); default: {DEFAULT_STRENGTH}",
    )
    p.add_argument(
        "--video-stride",
        type=int,
        default=None,
        metavar="N",
        help="with --video, take every Nth input frame (1 keeps the input's rate); default: 1",
    )
    p.add_argument(
        "--video-mask",
        default=None,
        metavar="MASK",
        help="with --video, inpainting: draw anew only where the mask image is white and keep the video where it is "
        "black (MASK an image for every frame, or a folder of masks named by frame, each held until the next)",
    )


def video_from_args(
    args: argparse.Namespace, free_init: FreeInit | None = None
) -> tuple[np.ndarray | None, float | None]:
    """(the input frames, at the input's size, and the strength) that `--video` asks for, or (None, None) without
    it. Everything is checked here, before any model loads: `--strength` and `--video-stride` need `--video`, the
    strength and stride are in range, FreeInit goes with the strength, and the input exists, decodes and has the
    frames asked for."""
    if args.video is None:
        given = [o for o, v in (("--strength", args.strength), ("--video-stride", args.video_stride)) if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --video INPUT")
        return None, None
    from animatediff.io.video_input import read_video_input
    from animatediff.pipeline.video_start import check_strength, check_video_options

    stride = 1 if args.video_stride is None else args.video_stride
    if stride < 1:
        raise InputError(f"--video-stride must be at least 1, got {stride}")
    if args.strength is not None:
        check_strength(args.strength, args.steps, "--strength")
    strength = check_video_options(args.video, args.strength, args.steps, free_init)
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    return read_video_input(args.video, args.frames, stride, OPTIONS), strength


def video_mask_from_args(args: argparse.Namespace, free_init: FreeInit | None = None) -> str | None:
    """`--video-mask`, checked before any model loads (it needs `--video`; not with FreeInit; found, an image)."""
    if args.video_mask is None:
        return None
    from animatediff.pipeline.video_mask import check_video_mask

    if args.video is None:
        raise InputError("--video-mask needs --video INPUT")
    check_video_mask(args.video_mask, args.video, args.frames, free_init)
    return args.video_mask

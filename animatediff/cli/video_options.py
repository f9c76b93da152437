"""`generate`'s video-to-video options (`--video INPUT --strength S --video-stride N`) and its start from a picture
(`--init-image PICTURE`, the A1111 extension's img2vid), checked and the input read before any model loads."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from animatediff.pipeline.image_start import ImageStart
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
        help="with --video or --init-image, 0-1: how much of the input is re-drawn (the fraction of --steps run, "
        f"from that noise level on; 1 = from noise); default: {DEFAULT_STRENGTH}",
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


def add_image_start_args(p: argparse.ArgumentParser) -> None:
    """A start from a picture (the A1111 AnimateDiff extension's img2vid, `pipeline/image_start.py`)."""
    p.add_argument(
        "--init-image",
        default=None,
        metavar="PICTURE",
        help="start the clip from this picture: a still clip of it whose frame i keeps 1 - i^P/S of it (--latent-power "
        "P, --latent-scale S) and is noise for the rest, then video-to-video at --strength (the A1111 AnimateDiff "
        "extension's img2vid)",
    )
    p.add_argument(
        "--last-frame",
        default=None,
        metavar="PICTURE",
        help="with --init-image, end the clip at this picture, kept the same way counting back from the last frame",
    )
    for option, default, what in (("--latent-power", 1.0, "P"), ("--latent-scale", 32.0, "S")):
        p.add_argument(option, type=float, default=None, metavar=what, help=f"with --init-image; default: {default:g}")
        p.add_argument(
            f"{option}-last", type=float, default=None, metavar=what, help=f"with --last-frame; default: {default:g}"
        )


def image_start_from_args(args: argparse.Namespace) -> ImageStart | None:
    """The `ImageStart` `--init-image` asks for (None without it), its pictures read and its numbers checked before
    any model loads; the options that need it refused without it."""
    needs = {"--last-frame": args.last_frame, "--latent-power": args.latent_power, "--latent-scale": args.latent_scale,
             "--latent-power-last": args.latent_power_last, "--latent-scale-last": args.latent_scale_last}  # fmt: skip
    if args.init_image is None:
        given = [option for option, value in needs.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --init-image PICTURE")
        return None
    if args.video is not None:
        raise InputError("give --video or --init-image to start from, not both")
    if args.last_frame is None and (args.latent_power_last, args.latent_scale_last) != (None, None):
        raise InputError("--latent-power-last and --latent-scale-last need --last-frame PICTURE")
    from animatediff.io.video_input import read_image
    from animatediff.pipeline.image_start import ImageStart

    pictures = [read_image(path, option) for option, path in (("--init-image", args.init_image),
                ("--last-frame", args.last_frame)) if path is not None]  # fmt: skip
    numbers = {"power": args.latent_power, "scale": args.latent_scale, "last_power": args.latent_power_last,
               "last_scale": args.latent_scale_last}  # fmt: skip
    return ImageStart(*pictures, **{key: value for key, value in numbers.items() if value is not None})


def video_from_args(
    args: argparse.Namespace, free_init: FreeInit | None = None
) -> tuple[np.ndarray | ImageStart | None, float | None]:
    """(the input frames, at the input's size, and the strength) that `--video` asks for, (an `ImageStart`, the
    strength) for `--init-image`, or (None, None) without either. Everything is checked here, before any model
    loads: `--strength` needs `--video` or `--init-image`, `--video-stride` needs `--video`, the strength and stride
    are in range, FreeInit goes with the strength, and the input exists, decodes and has the frames asked for."""
    start = image_start_from_args(args)
    if start is not None:
        from animatediff.pipeline.video_start import check_strength, check_video_options

        if args.video_stride is not None:
            raise InputError("--video-stride needs --video INPUT")
        if args.strength is not None:
            check_strength(args.strength, args.steps, "--strength")
        return start, check_video_options(start, args.strength, args.steps, free_init)
    if args.video is None:
        if args.video_stride is not None:
            raise InputError("--video-stride needs --video INPUT")
        if args.strength is not None:
            raise InputError("--strength needs --video INPUT or --init-image PICTURE")
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

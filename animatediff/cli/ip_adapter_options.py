"""`generate`'s IP-Adapter options (--ip-adapter, --ip-image, --ip-scale, --image-encoder) and the `IPAdapter` they
make, checked before any model loads: the options go together, the scale is a number ≥ 0, the files exist and the
images open."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter

FLAGS = ("--ip-adapter", "--ip-image", "--ip-scale", "--image-encoder")
KEYFRAME = re.compile(r"(\d+):(.+)")
"""An --ip-image at a keyframe: FRAME:IMAGE."""


def add_ip_adapter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ip-adapter",
        default=None,
        metavar="WEIGHTS",
        help="IP-Adapter (Ye et al. 2023): an image prompt beside the text; its weights file (.safetensors/.bin in "
        "diffusers' layout, e.g. h94/IP-Adapter's ip-adapter_sd15.safetensors) or hub reference",
    )
    p.add_argument(
        "--ip-image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="the image prompt for --ip-adapter; repeatable (the images are seen together); FRAME:IMAGE puts an image "
        "at a keyframe, the frames between taking embeddings interpolated as --prompt-interpolation says (and going "
        "round with --prompt-travel-loop)",
    )
    p.add_argument(
        "--ip-scale",
        type=float,
        default=None,
        metavar="S",
        help="weight of the image prompt: 0 the text alone, 1 as trained (the default); about 0.5 lets the text "
        "steer more",
    )
    p.add_argument(
        "--image-encoder",
        default=None,
        metavar="PATH",
        help="the IP-Adapter's CLIP image encoder (CLIPVisionModelWithProjection folder or hub id); default: the "
        "image_encoder folder beside the --ip-adapter file",
    )


def ip_adapter_from_args(args: argparse.Namespace) -> IPAdapter | None:
    """The IPAdapter the options ask for, None without --ip-adapter; files checked and images opened now."""
    from animatediff.pipeline.ip_adapter import check_ip_keyframes, ip_adapter_option, open_images

    values = (args.ip_adapter, keyframed(args.ip_image), args.ip_scale, args.image_encoder)
    ip_adapter = ip_adapter_option(*values, names=FLAGS)
    if ip_adapter is not None:
        check_ip_keyframes(ip_adapter, args.frames)
        ip_adapter.check_files()
        open_images(ip_adapter.images)  # a file that is no image fails now, not after loading
    return ip_adapter


def keyframed(images: list[str]) -> list[str] | dict[int, list[str]]:
    """--ip-image values as given, or as keyframes {frame: images} where they are written FRAME:IMAGE (every one
    of them, and no file is named so)."""
    split = [KEYFRAME.fullmatch(image) for image in images]
    if not images or not all(split) or any(Path(image).exists() for image in images):
        return images
    frames: dict[int, list[str]] = {}
    for match in split:
        frames.setdefault(int(match[1]), []).append(match[2])
    return dict(sorted(frames.items()))

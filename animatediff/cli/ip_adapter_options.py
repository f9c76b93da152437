"""`generate`'s IP-Adapter options (--ip-adapter, --ip-image, --ip-scale, --image-encoder) and the `IPAdapter` they
make, checked before any model loads: the options go together, the scale is a number ≥ 0, the files exist and the
images open."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter

FLAGS = ("--ip-adapter", "--ip-image", "--ip-scale", "--image-encoder")


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
        help="the image prompt for --ip-adapter; repeatable (the images are seen together)",
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
    from animatediff.pipeline.ip_adapter import ip_adapter_option, open_images

    values = (args.ip_adapter, args.ip_image, args.ip_scale, args.image_encoder)
    ip_adapter = ip_adapter_option(*values, names=FLAGS)
    if ip_adapter is not None:
        ip_adapter.check_files()
        open_images(ip_adapter.images)  # a file that is no image fails now, not after loading
    return ip_adapter

"""`generate`'s IP-Adapter options (--ip-adapter, --ip-image, --ip-scale, --image-encoder, --ip-mask) and the
`IPAdapter`s they make, checked before any model loads: the options go together, the scale is a number ≥ 0 (or a
mapping per UNet block), the files exist and the images open.

--ip-adapter may be given more than once: several image prompts at once. The options after the second --ip-adapter
(the third, …) are that one's; those before it, the first's."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter

FLAGS = ("--ip-adapter", "--ip-image", "--ip-scale", "--image-encoder", "--ip-mask")
KEYFRAME = re.compile(r"(\d+):(.+)")
"""An --ip-image at a keyframe: FRAME:IMAGE."""


class _InOrder(argparse.Action):
    """Stores an IP-Adapter option in `ip_options` as (its flag, its value), in the order given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        namespace.ip_options = [*namespace.ip_options, (self.option_strings[0], values)]


def add_ip_adapter_args(p: argparse.ArgumentParser) -> None:
    p.set_defaults(ip_options=[])
    p.add_argument(
        "--ip-adapter",
        action=_InOrder,
        metavar="WEIGHTS",
        help="IP-Adapter (Ye et al. 2023): an image prompt beside the text; its weights file (.safetensors/.bin in "
        "diffusers' layout, e.g. h94/IP-Adapter's ip-adapter_sd15.safetensors) or hub reference; repeatable: "
        "several image prompts at once, the --ip-image, --ip-scale, --image-encoder and --ip-mask after each (from "
        "the second on) its own",
    )
    p.add_argument(
        "--ip-image",
        action=_InOrder,
        metavar="IMAGE",
        help="the image prompt for the --ip-adapter before it (or the first); repeatable (the images are seen "
        "together); FRAME:IMAGE puts an image at a keyframe, the frames between taking embeddings interpolated as "
        "--prompt-interpolation says (and going round with --prompt-travel-loop)",
    )
    p.add_argument(
        "--ip-scale",
        action=_InOrder,
        metavar="S",
        help="weight of the image prompt: 0 the text alone, 1 as trained (the default); about 0.5 lets the text "
        "steer more; or per block of the UNet in diffusers' layer-wise form, written as YAML, the blocks not named "
        "at 0 (InstantStyle), e.g. '{up: {block_1: [0, 1, 0]}}'",
    )
    p.add_argument(
        "--image-encoder",
        action=_InOrder,
        metavar="PATH",
        help="the IP-Adapter's CLIP image encoder (CLIPVisionModelWithProjection folder or hub id); default: the "
        "image_encoder folder beside the --ip-adapter file",
    )
    p.add_argument(
        "--ip-mask",
        action=_InOrder,
        metavar="MASK",
        help="where the IP-Adapter's image prompt acts (white): a mask image, or a folder of masks named by their "
        "frame (0000.png, 0016.png: each holds until the next)",
    )


def ip_adapter_from_args(args: argparse.Namespace) -> tuple[IPAdapter, ...]:
    """The IPAdapters the options ask for, in order (none without --ip-adapter); files checked and images opened
    now."""
    from animatediff.pipeline.ip_adapter import check_ip_adapters, ip_adapter_option, open_images
    from animatediff.pipeline.ip_scales import parse_ip_scale

    adapters = []
    groups = option_groups(args.ip_options)
    for i, options in enumerate(groups):
        images = keyframed(options.get("--ip-image", []))
        weights, scale = options.get("--ip-adapter"), options.get("--ip-scale")
        try:
            scale = None if scale is None else parse_ip_scale(scale, "--ip-scale")
            encoder, mask = options.get("--image-encoder"), options.get("--ip-mask")
            ip_adapter = ip_adapter_option(weights, images, scale, encoder, mask, names=FLAGS)
        except InputError as err:
            raise InputError(f"IP-Adapter {i + 1} of {len(groups)} ({weights}): {err}" if i else err) from None
        if ip_adapter is not None:
            check_ip_adapters(ip_adapter, args.frames)
            ip_adapter.check_files()
            open_images(ip_adapter.images)  # a file that is no image fails now, not after loading
            adapters.append(ip_adapter)
    return tuple(adapters)


def option_groups(options: Sequence[tuple[str, object]]) -> list[dict[str, object]]:
    """The (flag, value) options in the order given, one {flag: value} per IP-Adapter (--ip-image: a list): each
    --ip-adapter after the first starts the next; one line for a flag other than --ip-image given twice in one."""
    groups: list[dict[str, object]] = [{}]
    for flag, value in options:
        if flag == "--ip-adapter" and flag in groups[-1]:
            groups.append({})
        group = groups[-1]
        if flag == "--ip-image":
            group.setdefault(flag, []).append(value)
        elif flag in group:
            raise InputError(f"{flag} given twice for one --ip-adapter (each --ip-adapter takes one {flag})")
        else:
            group[flag] = value
    return groups


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

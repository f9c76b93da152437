"""`generate`'s regional prompts (`--region MASK:PROMPT`, repeatable) and the `Region`s they make, and the LoRAs acting
in some of them (`--region-lora REGIONS:PATH[:SCALE]`, SCALE a number or FRAME=SCALE keyframes), checked before any
model loads."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.regions import Region


def add_region_args(p: argparse.ArgumentParser) -> None:
    """Regional prompts (`pipeline/regions.py`)."""
    p.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="MASK:PROMPT",
        help="regional prompt: PROMPT drawn where the mask image MASK is white (or, MASK a folder of masks named by "
        "frame, each held until the next), over --prompt as the background; repeatable, a later region drawn over "
        "an earlier one (animatediff-cli-prompt-travel's region_map); each costs one more UNet pass per step (two with "
        "ControlNets confined to regions, keyframe ControlNets, a reference, region LoRAs, PAG or guidance rescale)",
    )
    p.add_argument(
        "--region-lora",
        action="append",
        default=[],
        metavar="REGIONS:PATH[:SCALE]",
        help="image LoRA acting only where the --region items REGIONS draw (their indices from 0 and background, "
        "comma-separated, e.g. 0,background), at SCALE (1.0 unless given) there and off elsewhere; its text-encoder "
        "part reads every prompt at SCALE (prompt-travel's lora_map {region, scale}). SCALE as FRAME=S keyframes, "
        "e.g. 0=0.2,15=1, eases between them by frame and goes round (the text-encoder part at 1); repeatable",
    )


def regions_from_args(args: argparse.Namespace) -> list[Region]:
    """The regions asked for, their masks read and checked; bad ones in one line, before any model loads."""
    from animatediff.pipeline.regions import Region, check_regions

    regions = []
    for value in args.region:
        mask, sep, prompt = value.partition(":")
        if not sep or not mask or not prompt.strip():
            raise InputError(f"--region {value!r}: give MASK:PROMPT (a mask image or folder, a colon, the prompt)")
        regions.append(Region(prompt, mask))
    check_regions(regions, args.frames, 1, args.prompt_editing)
    return regions


def region_lora_specs(
    args: argparse.Namespace,
) -> list[tuple[tuple[int | str, ...], str, float | dict[int, float]]]:
    """(regions, path, scale or {frame: scale}) of each --region-lora; a bad one in one line, before any model
    loads."""
    from animatediff.formats.lora import parse_scaled_path
    from animatediff.pipeline.region_loras import SEQUENTIAL

    if args.region_lora and not args.region:
        raise InputError("--region-lora acts in the --region items: give --region too")
    specs = []
    for value in args.region_lora:
        named, sep, rest = value.partition(":")
        if not sep or not named or not rest:
            raise InputError(f"--region-lora {value!r}: give REGIONS:PATH[:SCALE], e.g. 0,background:style.safetensors")
        regions = tuple(int(r) if r.strip().isdigit() else r.strip() for r in named.split(","))
        for region in regions:
            if region != "background" and not (isinstance(region, int) and region < len(args.region)):
                raise InputError(
                    f"--region-lora {value!r}: region {region!r} is not one of the {len(args.region)} --region "
                    "items (0, 1, …) or background"
                )
        path, sep, tail = rest.rpartition(":")
        keyframed = sep and "=" in tail and "/" not in tail and "\\" not in tail
        specs.append(
            (regions, path, _keyframes(value, tail, args.frames)) if keyframed else (regions, *parse_scaled_path(rest))
        )
    if specs and getattr(args, "offload", "none") == "sequential":
        raise InputError(f"--region-lora: {SEQUENTIAL}")
    return specs


def _keyframes(value: str, tail: str, num_frames: int) -> dict[int, float]:
    """--region-lora's "FRAME=SCALE,…" as {frame: scale}, checked as a `RegionLora`'s keyframes on a clip of
    `num_frames`; one line if not."""
    from animatediff.pipeline.region_loras import RegionLora

    keyframes = {}
    for item in tail.split(","):
        frame, _, scale = item.partition("=")
        try:
            keyframes[int(frame)] = float(scale)
        except ValueError:
            raise InputError(f"--region-lora {value!r}: keyframes are FRAME=SCALE,…, e.g. 0=0.2,15=1.0") from None
    RegionLora(value, (), keyframes).frame_scales(num_frames)  # frames from 0 within the clip, numbers
    return keyframes

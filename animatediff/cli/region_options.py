"""`generate`'s regional prompts (`--region MASK:PROMPT`, repeatable) and the `Region`s they make, checked before any
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
        "an earlier one (animatediff-cli-prompt-travel's region_map); each costs one more prediction per step",
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

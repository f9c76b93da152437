"""`generate`'s perturbed-attention guidance options (`--pag-scale` and its settings) and the `PAG` they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.pag import PAG

DEFAULT_LAYERS = ("mid_block.*attn1",)  # pipeline.pag.DEFAULT_LAYERS, here so that building the parser imports no torch


def add_pag_args(p: argparse.ArgumentParser) -> None:
    """PAG (Ahn et al. 2024), as diffusers' AnimateDiffPAGPipeline: `pag_scale`, `pag_adaptive_scale` and
    `pag_applied_layers`; the settings need `--pag-scale`."""
    p.add_argument(
        "--pag-scale",
        type=float,
        default=None,
        metavar="P",
        help="perturbed-attention guidance: also predict with some self-attention made the identity and guide away "
        "from it by P (3 is usual; one more UNet pass per step); off unless given",
    )
    p.add_argument(
        "--pag-adaptive-scale",
        type=float,
        default=None,
        metavar="A",
        help="PAG's scale lowered by A·(1000 − t) as the steps go on, down to 0; default 0 (constant)",
    )
    p.add_argument(
        "--pag-layer",
        action="append",
        default=None,
        metavar="PATTERN",
        help="a self-attention layer PAG perturbs, as a regular expression over diffusers' UNetMotionModel names "
        f"(e.g. mid, down_blocks.1, up_blocks.*motion_modules.*attn1); repeatable; default: {DEFAULT_LAYERS[0]}",
    )


def pag_from_args(args: argparse.Namespace) -> PAG | None:
    """The PAG settings asked for (None without `--pag-scale`); bad values in one line, before any model loads."""
    from animatediff.pipeline.pag import PAG

    if args.pag_scale is None:
        if args.pag_adaptive_scale is not None or args.pag_layer:
            raise InputError("--pag-adaptive-scale and --pag-layer need --pag-scale")
        return None
    return PAG(args.pag_scale, args.pag_adaptive_scale or 0.0, tuple(args.pag_layer or DEFAULT_LAYERS))

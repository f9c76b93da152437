"""`generate`'s reference-only options (`--reference` and its settings) and the `Reference` they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.reference import Reference

MODES = {"only": (True, False), "adain": (False, True), "adain+attn": (True, True)}
"""A1111 ControlNet's reference preprocessors (reference_only, reference_adain, reference_adain+attn) → (attention,
AdaIN)."""


def add_reference_args(p: argparse.ArgumentParser) -> None:
    """Reference-only (prompt-travel's `controlnet_ref`, A1111 ControlNet's reference preprocessors); the settings
    need `--reference`. Its layer weights are run-entry keys (`reference`)."""
    p.add_argument(
        "--reference",
        default=None,
        metavar="IMAGE",
        help="reference-only: the clip takes this picture's look through the UNet's own self-attention, with no "
        "model of its own (one more UNet pass per step); off unless given",
    )
    p.add_argument(
        "--reference-mode",
        choices=list(MODES),
        default=None,
        help="what reads the picture, as A1111's reference preprocessors: only (self-attention), adain (feature "
        "statistics) or adain+attn; default only",
    )
    p.add_argument(
        "--reference-fidelity",
        type=float,
        default=None,
        metavar="F",
        help="style fidelity, 0 … 1: how much of its own look the unconditional prediction keeps, so guidance "
        "pushes towards the picture; default 0.5",
    )
    p.add_argument(
        "--reference-pattern",
        default=None,
        metavar="S,S,…",
        help="how strongly each frame takes the picture, repeated over the frames (1,0: every other frame); default 1",
    )


def reference_from_args(args: argparse.Namespace) -> Reference | None:
    """The reference asked for (None without `--reference`), its picture read; bad values in one line, before any
    model loads."""
    from animatediff.pipeline.reference import Reference

    settings = (args.reference_mode, args.reference_fidelity, args.reference_pattern)
    if args.reference is None:
        if any(s is not None for s in settings):
            raise InputError("--reference-mode, --reference-fidelity and --reference-pattern need --reference")
        return None
    attention, adain = MODES[args.reference_mode or "only"]
    pattern = (1.0,)
    if args.reference_pattern is not None:
        try:
            pattern = tuple(float(s) for s in args.reference_pattern.split(","))
        except ValueError:
            raise InputError(f"--reference-pattern {args.reference_pattern!r}: numbers joined by commas") from None
    fidelity = 0.5 if args.reference_fidelity is None else args.reference_fidelity
    return Reference(args.reference, attention, adain, style_fidelity=fidelity, scale_pattern=pattern)

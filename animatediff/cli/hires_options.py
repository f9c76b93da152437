"""`generate`'s hires fix options (`--hires-scale S --hires-strength D --hires-steps N`) and the `HiresFix` they
make, and the gradual latent hires fix's (`--gradual-latent F:S,…`) and its `GradualLatent`, checked before any
model loads."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.hires import HiresFix
    from animatediff.sampling.gradual_latent import GradualLatent

DEFAULT_STRENGTH = 0.5  # pipeline.hires.HiresFix's, here so that building the parser imports no torch
UPSCALERS = ("pixel", "latent", "latent-bicubic", "latent-nearest")  # pipeline.hires.UPSCALERS', likewise


def add_hires_args(p: argparse.ArgumentParser) -> None:
    """The hires fix (`pipeline/hires.py`): the clip drawn again larger from its upscaled frames."""
    p.add_argument(
        "--hires-scale",
        type=float,
        default=None,
        metavar="S",
        help="hires fix: draw the clip, upscale its frames S times (1-4; 1.5 is usual) and draw them again by "
        "video-to-video, as A1111's Hires. fix; off unless given",
    )
    p.add_argument(
        "--hires-strength",
        type=float,
        default=None,
        metavar="D",
        help=f"with --hires-scale, how much of the upscaled frames is drawn again, 0-1; default {DEFAULT_STRENGTH}",
    )
    p.add_argument(
        "--hires-steps",
        type=int,
        default=None,
        metavar="N",
        help="with --hires-scale, the second pass's steps (of which --hires-strength runs); default: --steps",
    )
    p.add_argument(
        "--hires-upscaler",
        choices=UPSCALERS,
        default=None,
        help="with --hires-scale, what is upscaled: the frames (pixel, antialiased bilinear; the default) or the "
        "latents (latent: bilinear, latent-bicubic, latent-nearest, as A1111's Latent upscalers; no VAE round trip, "
        "best at a strength of 0.5 or more)",
    )


def hires_from_args(args: argparse.Namespace) -> HiresFix | None:
    """The hires fix asked for (None without `--hires-scale`); bad values in one line, before any model loads."""
    from animatediff.pipeline.hires import HiresFix

    if args.hires_scale is None:
        if args.hires_strength is not None or args.hires_steps is not None or args.hires_upscaler is not None:
            raise InputError("--hires-strength, --hires-steps and --hires-upscaler need --hires-scale")
        return None
    strength = DEFAULT_STRENGTH if args.hires_strength is None else args.hires_strength
    steps = args.steps if args.hires_steps is None else args.hires_steps
    return HiresFix(args.hires_scale, strength, steps, args.hires_upscaler or "pixel")


def add_gradual_latent_args(p: argparse.ArgumentParser) -> None:
    """The gradual latent hires fix (`sampling/gradual_latent.py`): the first steps drawn on smaller latents."""
    p.add_argument(
        "--gradual-latent",
        default=None,
        metavar="F:S,…",
        help="gradual latent hires fix (animatediff-cli-prompt-travel's): from each fraction F of the steps on, the "
        "latents at scale S of the clip's size, e.g. 0:0.5,0.7:1 (half the size until 70%% of the steps); starts "
        "at 0 and ends at scale 1; off unless given",
    )
    p.add_argument(
        "--gradual-latent-reverse-steps",
        type=int,
        default=None,
        metavar="N",
        help="with --gradual-latent, the steps gone back at each change of size; default 5",
    )
    p.add_argument(
        "--gradual-latent-noise-adds",
        type=int,
        default=None,
        metavar="N",
        help="with --gradual-latent, how many times the start's noise is added back at each change; default 3",
    )


def read_scales(text: str, what: str = "--gradual-latent") -> dict[str, str]:
    """The text F:S,F:S as {F: S}, strings as given (`GradualLatent` reads and checks the numbers)."""
    scales = {}
    for item in text.split(","):
        fraction, colon, scale = item.partition(":")
        if not colon or not fraction.strip() or not scale.strip():
            raise InputError(f"{what} {text!r}: give FRACTION:SCALE pairs separated by commas, e.g. 0:0.5,0.7:1")
        scales[fraction.strip()] = scale.strip()
    return scales


def gradual_latent_from_args(args: argparse.Namespace) -> GradualLatent | None:
    """The gradual latent hires fix asked for (None without `--gradual-latent`); bad values in one line."""
    from animatediff.sampling.gradual_latent import GradualLatent

    reverse, adds = args.gradual_latent_reverse_steps, args.gradual_latent_noise_adds
    if args.gradual_latent is None:
        if reverse is not None or adds is not None:
            raise InputError("--gradual-latent-reverse-steps and --gradual-latent-noise-adds need --gradual-latent")
        return None
    given = {"reverse_steps": reverse, "noise_add_count": adds}
    return GradualLatent(read_scales(args.gradual_latent), **{k: v for k, v in given.items() if v is not None})

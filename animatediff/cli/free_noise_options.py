"""`generate`'s FreeNoise options (`--free-noise` and its noise type and window weighting) and the `FreeNoise` they
make; the window's length and stride are the context options'."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.pipeline.free_noise import FreeNoise

FREE_NOISE_TYPES = ("shuffle_context", "repeat_context", "random")  # pipeline.free_noise.NOISE_TYPES
FREE_NOISE_WEIGHTINGS = ("flat", "pyramid", "delayed_reverse_sawtooth")  # models.free_noise.WEIGHTINGS


def add_free_noise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--free-noise",
        action="store_true",
        help="FreeNoise for long clips: rescheduled noise, and motion modules attending in fused windows of "
        "--context-length frames (16 unless given) every --context-stride frames (4 unless given), instead of the "
        "sliding context windows",
    )
    p.add_argument(
        "--free-noise-noise-type",
        choices=FREE_NOISE_TYPES,
        default="shuffle_context",
        help="noise of frames past the first window: the window's shuffled locally, repeated, or independent",
    )
    p.add_argument(
        "--free-noise-weighting",
        choices=FREE_NOISE_WEIGHTINGS,
        default="pyramid",
        help="how the motion modules' windows are fused per frame",
    )


def free_noise_option(args: argparse.Namespace) -> FreeNoise | None:
    """The FreeNoise --free-noise asks for (it takes --context-length and --context-stride over), else None."""
    if not args.free_noise:
        return None
    from animatediff.pipeline.free_noise import FreeNoise

    windows = {"context_length": args.context_length, "context_stride": args.context_stride}
    given = {key: value for key, value in windows.items() if value is not None}  # else FreeNoise's 16 and 4
    return FreeNoise(**given, weighting=args.free_noise_weighting, noise_type=args.free_noise_noise_type)

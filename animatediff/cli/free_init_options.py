"""`generate`'s FreeInit options (`--free-init ITERS` and its filter settings) and the `FreeInit` they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.sampling.free_init import FreeInit

# sampling.free_init's FILTERS and FreeInit's defaults, here so that building the parser imports no torch.
FILTERS = ("butterworth", "gaussian", "ideal", "box")
DEFAULTS = {"filter": "butterworth", "spatial_stop": 0.25, "temporal_stop": 0.25, "order": 4}
_SETTINGS = {  # option → FreeInit field
    "--free-init-filter": "filter",
    "--free-init-spatial-stop": "spatial_stop",
    "--free-init-temporal-stop": "temporal_stop",
    "--free-init-order": "order",
    "--free-init-fast": "fast_sampling",
}


def add_free_init_args(p: argparse.ArgumentParser) -> None:
    """FreeInit (Wu et al. 2023): rerun sampling from the last run's low frequencies and fresh high-frequency
    noise. The settings are diffusers' `enable_free_init` arguments; they need `--free-init`."""
    p.add_argument(
        "--free-init",
        type=int,
        default=None,
        metavar="ITERS",
        help="FreeInit: sample ITERS times in all, each run after the first starting from the last one's low "
        "spatio-temporal frequencies and fresh high-frequency noise (3 is usual; ITERS times the sampling time)",
    )
    p.add_argument(
        "--free-init-filter",
        choices=FILTERS,
        default=None,
        help=f"FreeInit's low-pass filter; default: {DEFAULTS['filter']}",
    )
    p.add_argument(
        "--free-init-spatial-stop",
        type=float,
        default=None,
        metavar="F",
        help=f"FreeInit's normalized spatial stop frequency, 0-1; default: {DEFAULTS['spatial_stop']}",
    )
    p.add_argument(
        "--free-init-temporal-stop",
        type=float,
        default=None,
        metavar="F",
        help=f"FreeInit's normalized temporal stop frequency, 0-1; default: {DEFAULTS['temporal_stop']}",
    )
    p.add_argument(
        "--free-init-order",
        type=int,
        default=None,
        metavar="N",
        help=f"the butterworth filter's order (higher: sharper cut-off); default: {DEFAULTS['order']}",
    )
    p.add_argument(
        "--free-init-fast",
        action="store_true",
        help="FreeInit's coarse-to-fine sampling: run i of n takes steps·i/n steps (faster, maybe worse)",
    )


def free_init_from_args(args: argparse.Namespace) -> FreeInit | None:
    """The `FreeInit` the options ask for (None without `--free-init`); a setting without `--free-init`, or a bad
    value, is an input error, raised before anything loads."""
    given = {field: getattr(args, option[2:].replace("-", "_")) for option, field in _SETTINGS.items()}
    given = {field: value for field, value in given.items() if value is not None and value is not False}
    if args.free_init is None:
        if given:
            options = [option for option, field in _SETTINGS.items() if field in given]
            raise InputError(f"{', '.join(options)} {'needs' if len(options) == 1 else 'need'} --free-init ITERS")
        return None
    from animatediff.sampling.free_init import FreeInit

    return FreeInit(iterations=args.free_init, **given)

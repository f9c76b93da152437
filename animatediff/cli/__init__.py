"""The `animatediff` command: one subcommand per user task, the work done by the library.

An input error (`animatediff.errors.InputError`, raised by the library's own checks) is printed as one line and
exits 2; with `--debug` (or ANIMATEDIFF_DEBUG=1) it keeps its traceback. An interrupt (Ctrl-C, KeyboardInterrupt)
prints "animatediff <command>: interrupted" and exits 130, the outputs being written under temporary names that
are removed. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from animatediff import __version__
from animatediff.cli.generate import add_generate
from animatediff.cli.tasks import add_convert, add_prepare, add_run, add_train
from animatediff.cli.ui import add_ui
from animatediff.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="animatediff",
        description="Animate Stable Diffusion 1.x models with trained motion modules (AnimateDiff).",
    )
    parser.add_argument("--version", action="version", version=f"animatediff {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of input errors too (or ANIMATEDIFF_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_generate(sub)
    add_convert(sub)
    add_run(sub)
    add_prepare(sub)
    add_train(sub)
    add_ui(sub)
    from animatediff.world.cli import add_world  # the world's own subcommands, mounted here

    add_world(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    command = "animatediff"
    try:
        args = build_parser().parse_args(argv)
        command = " ".join(["animatediff", args.command, *([args.action] if getattr(args, "action", None) else [])])
        status = args.run(args)  # a command may return an exit status (`world check`: 1 when a figure is off)
    except InputError as err:
        if args.debug or os.environ.get("ANIMATEDIFF_DEBUG", "") not in ("", "0"):
            raise
        print(f"animatediff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    return status or 0

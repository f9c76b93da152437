"""`animatediff ui`: the web app, served on loopback unless --listen."""

from __future__ import annotations

import argparse
import logging
import webbrowser

from animatediff.cli.memory_options import add_memory_args, memory_from_args
from animatediff.cli.options import HelpFormatter, device_options, resolve_device
from animatediff.errors import InputError

LOOPBACK = "127.0.0.1"


def add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="a web app in the browser: pick models, generate, keep a history",
        description="Serve a web page to generate animations, the models staying loaded between runs. It opens "
        "ready to generate with the embedded world model; --models adds a models folder in the usual layout "
        "(Stable-diffusion/, Lora/, motion_modules/, motion_lora/, ControlNet/, SparseCtrl/, ipadapter/, "
        "clip_vision/).",
        formatter_class=HelpFormatter,
        parents=[device_options()],
    )
    p.add_argument("--models", default=None, metavar="DIR", help="models folder to offer (scanned again on refresh)")
    p.add_argument("--output-dir", default="outputs/ui", help="where results and their settings are kept")
    p.add_argument("--host", default=None, help=f"address to bind; default: {LOOPBACK} ({'0.0.0.0'} with --listen)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free one)")
    p.add_argument("--listen", action="store_true", help="serve the local network too, not only this machine")
    p.add_argument("--upload-cap", type=float, default=64, metavar="MIB", help="largest upload, in MiB")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    add_memory_args(p)  # small GPUs and speed, for every job: --vae-tiling, --offload, --ff-chunk, --compile, …
    p.set_defaults(run=run_ui)


def bind_address(args: argparse.Namespace) -> str:
    """--host, else loopback, or every interface with --listen."""
    if args.host is not None:
        return args.host
    return "0.0.0.0" if args.listen else LOOPBACK


def run_ui(args: argparse.Namespace) -> None:
    from animatediff.ui.server import make_server
    from animatediff.ui.studio import Studio

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: not a port (0–65535)")
    if args.upload_cap <= 0:
        raise InputError(f"--upload-cap {args.upload_cap}: must be positive")
    device, dtype = resolve_device(args)
    memory = memory_from_args(args, device)  # checked before the server starts
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    studio = Studio(args.models, args.output_dir, device, dtype, int(args.upload_cap * 2**20), memory)
    try:
        server = make_server(studio, bind_address(args), args.port)
    except OSError as err:
        studio.close()
        raise InputError(f"cannot serve on {bind_address(args)}:{args.port}: {err.strerror or err}") from None
    host, port = server.server_address[:2]
    url = f"http://{LOOPBACK if host == '0.0.0.0' else host}:{port}/"
    print(f"animatediff ui: serving {url} (Ctrl-C stops)", flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        studio.close()

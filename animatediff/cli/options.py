"""What the subcommands share: the help layout, the options several of them take, device and dtype choice."""

from __future__ import annotations

import argparse
import re

from animatediff.errors import InputError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help, unless the help already says it or there is none to say (None, an
    empty string or list, a switch that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def device_options() -> argparse.ArgumentParser:
    """--device and --dtype, for the subcommands that run a model."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu; default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: fp16 on GPU, fp32 on CPU")
    return p


def quiet_option() -> argparse.ArgumentParser:
    """--quiet, for the subcommands that show progress."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    return p


def check_device(device: str) -> None:
    """An InputError, before anything loads, for a device that is not cpu, cuda or cuda:N, or that is not here."""
    import torch

    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device)
    if match is None:
        raise InputError(f"--device {device}: unknown device; use cuda, cuda:N or cpu")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is available; use --device cpu")
    if kind == "cuda" and index is not None and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"--device {device}: there is no such GPU; this machine has cuda:0 to cuda:{count - 1}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: no Apple GPU (MPS) is available; use --device cpu")


def resolve_device(args: argparse.Namespace) -> tuple[str, object]:
    """(device, torch dtype) from --device and --dtype: an unknown or absent device, or a GPU dtype asked for on a
    CPU, is an input error."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    name = getattr(args, "dtype", "auto")
    if name == "auto":
        name = "fp16" if device.startswith("cuda") else "fp32"
    if name != "fp32" and not device.startswith("cuda"):
        raise InputError(f"--dtype {name} needs a GPU; on {device} use fp32")
    return device, getattr(torch, DTYPES[name])


def silence_libraries() -> None:
    """--quiet covers the loading bars and notices of transformers and diffusers too."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()

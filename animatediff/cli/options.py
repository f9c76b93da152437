"""What the subcommands share: the help layout, the options several of them take, device and dtype choice."""

from __future__ import annotations

import argparse

from animatediff.errors import InputError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class HelpFormatter(argparse.HelpFormatter):
    """Each option's default after its help, unless the help already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
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


def resolve_device(args: argparse.Namespace) -> tuple[str, object]:
    """(device, torch dtype) from --device and --dtype: a GPU dtype asked for on a CPU is an input error."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
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

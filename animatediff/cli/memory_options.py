"""The small-GPU and speed options of `generate` and `run` (`pipeline/memory.py` does the work)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.pipeline.memory import MemoryOptions

OFFLOAD_MODES = ("none", "model", "sequential")  # pipeline.memory.OFFLOAD_MODES, without importing torch for --help


def add_memory_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "small GPUs and speed",
        "Each trades speed for GPU memory, except --compile, which trades a slow first call for faster steps, and "
        "--channels-last, a weight layout for GPUs. "
        "Frames are the same with or without them (up to float rounding), save --vae-tiling's blended seams.",
    )
    g.add_argument(
        "--vae-slicing",
        type=int,
        default=16,
        metavar="N",
        help="frames per VAE call in the decode (and the video-to-video encode); lower needs less memory",
    )
    g.add_argument(
        "--vae-tiling",
        action="store_true",
        help="decode (and encode) every frame in overlapping tiles of the VAE's own size (512 px for SD1.5, 1024 for "
        "SDXL), blended at the seams: far less VAE memory above that size, frames slightly different from untiled",
    )
    g.add_argument(
        "--offload",
        choices=OFFLOAD_MODES,
        default="none",
        help="keep the models in CPU memory (accelerate's offload; needs a GPU): model moves the text encoder, the "
        "UNet with its motion modules and the VAE to the GPU one at a time; sequential moves every layer's weights "
        "for its call only (least memory, much slower)",
    )
    g.add_argument(
        "--free-text-encoder",
        action="store_true",
        help="move the text encoder(s) back to CPU memory after the prompts are encoded (always so with --offload)",
    )
    g.add_argument(
        "--ff-chunk",
        type=int,
        default=None,
        metavar="N",
        help="run the motion modules' feed-forward on N pixel positions' frame sequences at a time (of batch × "
        "height × width at each level) rather than all at once: less peak memory, same frames",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet's blocks and motion modules one by one: the steps run faster, but the first call "
        "first compiles every block for its size, frame count and batch (and a new one compiles again), so it is "
        "much slower than the calls after it; where torch.compile cannot run, one line says why and it runs "
        "uncompiled",
    )
    g.add_argument(
        "--channels-last",
        action="store_true",
        help="store the UNet's convolution weights channels-last (NHWC), the layout GPUs' half-precision convolution "
        "kernels prefer; the same frames up to float rounding; no help on CPU",
    )


def memory_from_args(args: argparse.Namespace, device: str) -> MemoryOptions:
    """The MemoryOptions the command line asks for, checked before any model loads: chunk sizes of at least 1,
    offload only on a GPU and with accelerate installed, no --compile with --offload sequential."""
    for flag, value in (("--vae-slicing", args.vae_slicing), ("--ff-chunk", args.ff_chunk)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}")
    if args.offload != "none":
        if device == "cpu":
            raise InputError(
                f"--offload {args.offload} needs a GPU (--device cuda): on the CPU the models already sit in CPU memory"
            )
        from animatediff.extras import require

        require("accelerate", f"--offload {args.offload}")
        if args.compile and args.offload == "sequential":
            raise InputError("--compile with --offload sequential: its per-layer hooks break every compiled block; "
                             "use --offload model")  # fmt: skip
    from animatediff.pipeline.memory import MemoryOptions

    return MemoryOptions(
        args.vae_slicing,
        args.vae_tiling,
        args.offload,
        args.ff_chunk,
        args.compile,
        args.free_text_encoder,
        args.channels_last,
    )

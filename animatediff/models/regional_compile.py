"""Regional compilation: `torch.compile` of the inflated UNet's repeated blocks, each on its own.

Compiling the whole UNet as one graph takes long and breaks on its Python-side parts (the motion modules run from
forward hooks, FreeNoise and motion scale are switched per call). Instead every ResNet and spatial transformer of
the down, mid and up blocks, and every motion module, is compiled by itself, as diffusers' `compile_repeated_blocks`
does for transformer models: blocks of one class share the traced code, and the small glue between them (time
embedding, convolutions in and out, up/down sampling) runs eagerly. The frames are folded into the batch, so each
region sees the same shapes at every step of a run; they are compiled static (`dynamic=False`), once per shape.

A layer's `forward` is compiled, not its call, so the forward hooks that run the motion modules stay outside the
layer's graph; the motion modules are regions of their own. The first call compiles every region for its shapes
(a new size, frame count or batch compiles again), which takes far longer than a step; later calls reuse them.

Where torch.compile cannot run, one line is logged and the UNet runs uncompiled: up front where the cause can be
seen (no `torch.compile`, no C++ compiler for inductor's CPU code, no Triton for its CUDA code), and otherwise at
the first call that fails to compile, after which every region runs eagerly for the rest of the process.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Iterator

import torch
from torch import nn

from animatediff.errors import InputError
from animatediff.models.inflate import AnimationUNet
from animatediff.models.motion_module import MotionModule

logger = logging.getLogger("animatediff")

RECOMPILE_LIMIT = 64
"""Compiled graphs kept per traced function: one per block shape (about 20 ResNet shapes in SD1.5's UNet) rather
than dynamo's default 8, past which it would silently fall back to eager."""

_failure: list[str] = []
"""Why torch.compile failed in this process, once it has: every compiled region then runs eagerly."""


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why torch.compile cannot run for `device` here, where that can be seen without compiling; None if it may."""
    device = torch.device(device)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (it came in torch 2.0)"
    if _failure:
        return _failure[0]
    if device.type == "cpu":
        names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
        if not any(shutil.which(name) for name in names):
            return "inductor compiles CPU code with a C++ compiler (g++ or clang++, or $CXX) and none is installed"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "inductor compiles CUDA code with Triton, which is not installed"
    return None


def compile_regions(unet: AnimationUNet) -> Iterator[nn.Module]:
    """The regions compiled: every ResNet and spatial transformer of the down, mid and up blocks, then every motion
    module, in the UNet's order."""
    inner = unet.unet
    for block in [*inner.down_blocks, inner.mid_block, *inner.up_blocks]:
        if block is None:
            continue
        yield from getattr(block, "resnets", ())
        yield from getattr(block, "attentions", None) or ()
    yield from (m for m in unet.motion_modules.modules() if isinstance(m, MotionModule))


class _CompiledForward:
    """A region's `forward`: the compiled one, or its own eager `forward` once torch.compile has failed."""

    def __init__(self, eager: Callable, compiled: Callable) -> None:
        self.eager = eager
        self.compiled = compiled

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        if _failure:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except (InputError, torch.cuda.OutOfMemoryError):  # the input's or the device's, not the compiler's: as eager
            raise
        except Exception as err:  # the compiler's failure (no compiler, an op it cannot lower); eager is the same math
            _fail(err)
            return self.eager(*args, **kwargs)


def _fail(err: BaseException) -> None:
    first = (str(err).strip().splitlines() or [""])[0][:200]
    _failure.append(f"{type(err).__name__}: {first}" if first else type(err).__name__)
    logger.warning(f"torch.compile failed ({_failure[0]}); the UNet runs uncompiled")


def compile_unet(unet: AnimationUNet, device: torch.device | str, mode: str | None = None) -> int:
    """Compile `unet`'s regions (`compile_regions`) in place for running on `device`; returns how many are compiled
    now, 0 where torch.compile cannot run (one line logged saying why). Regions compiled before are kept, so calling
    it again after a motion-module swap compiles only the new modules. `mode`: torch.compile's (None: its
    default). Parameters, state-dict keys and hooks are untouched; `uncompile_unet` undoes it."""
    reason = compile_unavailable(device)
    if reason is not None:
        if not _failure:
            logger.warning(f"torch.compile cannot run here ({reason}); the UNet runs uncompiled")
        return 0
    _raise_recompile_limit()
    count = 0
    for region in compile_regions(unet):
        count += 1
        if isinstance(region.__dict__.get("forward"), _CompiledForward):
            continue
        eager = region.forward
        try:
            compiled = torch.compile(eager, mode=mode, dynamic=False)
        except Exception as err:  # torch.compile refusing up front (an old or a build without dynamo)
            _fail(err)
            uncompile_unet(unet)
            return 0
        region.forward = _CompiledForward(eager, compiled)
    return count


def _raise_recompile_limit() -> None:
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name since torch 2.6, and before
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
            return


def uncompile_unet(unet: AnimationUNet) -> None:
    """Every region of `unet` back to its eager `forward`."""
    for region in compile_regions(unet):
        if isinstance(region.__dict__.get("forward"), _CompiledForward):
            del region.forward


def is_compiled(unet: AnimationUNet) -> bool:
    """Whether any region of `unet` has a compiled `forward`."""
    return any(isinstance(r.__dict__.get("forward"), _CompiledForward) for r in compile_regions(unet))

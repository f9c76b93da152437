"""FreeU (Si et al., CVPR 2024) in three forms, each with its tool's factors b1, b2 (backbone) and s1, s2 (the skip
features' lowest frequencies, diffusers' `fourier_filter`):

- `diffusers` (diffusers' `enable_freeu`): at each skip join of the first two up blocks, the backbone features'
  first half of the channels × b1 (b2).
- `comfy` (ComfyUI's FreeU node): the same factors chosen by the backbone's width at each skip join of the up
  blocks, as the official code chooses them: 4 × the first block's width takes b1, s1 and 2 × takes b2, s2. On SD1.5
  that is up blocks 0 and 1 and up block 2's first join (b1), then up block 2's other joins and up block 3's first
  (b2): more joins than diffusers touches.
- `comfy-v2` (ComfyUI's FreeU_V2): the `comfy` joins, the backbone's first half scaled by 1 + (b − 1) × its mean
  over the channels, min-max normalised over each image, so the strongest features take b and the weakest 1.

The frames are folded into the batch, so each frame is filtered and normalised on its own, as in diffusers'
AnimateDiffPipeline and ComfyUI-AnimateDiff-Evolved.

diffusers' values for SD1.5: b1=1.5, b2=1.6, s1=0.9, s2=0.2; ComfyUI's defaults: FreeU b1=1.1, b2=1.2, FreeU_V2
b1=1.3, b2=1.4, both s1=0.9, s2=0.2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from animatediff.errors import InputError, non_negative
from animatediff.models import AnimationUNet

FORMS = ("diffusers", "comfy", "comfy-v2")
FACTORS = ("b1", "b2", "s1", "s2")


@dataclass(frozen=True)
class FreeU:
    """FreeU's four factors and the form that applies them (module docstring)."""

    b1: float
    """The first up stage's backbone factor."""
    b2: float
    """The second up stage's backbone factor."""
    s1: float
    """The first up stage's skip low-frequency factor."""
    s2: float
    """The second up stage's skip low-frequency factor."""
    form: str = "diffusers"
    """One of FORMS: `diffusers` (enable_freeu), `comfy` (ComfyUI's FreeU node), `comfy-v2` (its FreeU_V2)."""

    def __post_init__(self) -> None:
        for name in FACTORS:
            non_negative(getattr(self, name), f"FreeU {name}")
        if self.form not in FORMS:
            raise InputError(f"FreeU form {self.form!r}: choose one of {', '.join(FORMS)}")


def parse_free_u(spec: object, what: str = "FreeU") -> FreeU:
    """A `FreeU` from "b1=1.5,b2=1.6,s1=0.9,s2=0.2[,form=comfy-v2]" (the CLI's and the web form's) or {b1, b2, s1, s2
    [, form]} (a run entry's), every factor named once; one line for anything else."""
    factors = spec
    if isinstance(spec, str):
        items = [item.partition("=") for item in spec.replace(" ", "").split(",") if item]
        if not all(sep for _, sep, _ in items):
            raise InputError(f"{what} {spec!r}: give b1=…,b2=…,s1=…,s2=…, e.g. b1=1.5,b2=1.6,s1=0.9,s2=0.2")
        try:
            factors = {key: value if key == "form" else float(value) for key, _, value in items}
        except ValueError:
            raise InputError(f"{what} {spec!r}: each factor must be a number") from None
    if not isinstance(factors, dict) or set(factors) - {"form"} != set(FACTORS):
        raise InputError(f"{what} {spec!r}: give b1, b2, s1 and s2, e.g. b1=1.5,b2=1.6,s1=0.9,s2=0.2")
    return FreeU(**factors)


@contextmanager
def free_u_on(unet: AnimationUNet, free_u: FreeU | None) -> Iterator[None]:
    """FreeU in `unet`'s up blocks for the block's duration, off again after; nothing for None."""
    if free_u is None:
        yield
        return
    if not isinstance(free_u, FreeU):
        raise InputError(f"free_u takes a FreeU(b1, b2, s1, s2), got {free_u!r}")
    if free_u.form == "diffusers":
        unet.unet.enable_freeu(s1=free_u.s1, s2=free_u.s2, b1=free_u.b1, b2=free_u.b2)
        undo = [unet.unet.disable_freeu]
    else:
        undo = [hook.remove for hook in _hook_skip_joins(unet.unet, free_u)]
    try:
        yield
    finally:
        for off in undo:
            off()


def _hook_skip_joins(unet: nn.Module, free_u: FreeU) -> list:
    """Hooks on each up block (its input's width) and on each of its resnets, whose input is the join [backbone,
    skip]: the join is rebuilt with FreeU applied where the backbone's width is 4 or 2 × the first block's."""
    width = unet.config.block_out_channels[0]
    factors = {4 * width: (free_u.b1, free_u.s1), 2 * width: (free_u.b2, free_u.s2)}
    hooks = []
    for block in unet.up_blocks:
        entering: list[int] = []  # the width of the block's input, read as it is called

        def read_width(_block: nn.Module, args: tuple, kwargs: dict, entering: list[int] = entering) -> None:
            entering[:] = [(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).shape[1]]

        hooks.append(block.register_forward_pre_hook(read_width, with_kwargs=True))
        for j, resnet in enumerate(block.resnets):
            before = block.resnets[j - 1].out_channels if j else None

            def join(_resnet: nn.Module, args: tuple, entering=entering, before=before):  # noqa: ANN001, ANN202
                backbone = before if before is not None else entering[0]
                if backbone not in factors:
                    return None
                h, skip = args[0].split([backbone, args[0].shape[1] - backbone], dim=1)
                h, skip = free_u_join(h, skip, *factors[backbone], v2=free_u.form == "comfy-v2")
                return (torch.cat([h, skip], dim=1), *args[1:])

            hooks.append(resnet.register_forward_pre_hook(join))
    return hooks


def free_u_join(
    h: torch.Tensor, skip: torch.Tensor, b: float, s: float, v2: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One skip join's FreeU: the backbone `h`'s first half of the channels × b (FreeU_V2: × 1 + (b − 1) × its
    channel mean, min-max normalised over each image), and `skip`'s lowest frequencies × s."""
    from diffusers.utils.torch_utils import fourier_filter

    half = h.shape[1] // 2
    scale = torch.full((), b, dtype=h.dtype, device=h.device)
    if v2:
        mean = h.mean(1, keepdim=True)
        low = mean.amin(dim=(2, 3), keepdim=True)
        span = (mean.amax(dim=(2, 3), keepdim=True) - low).clamp_min(torch.finfo(h.dtype).tiny)
        scale = (b - 1) * (mean - low) / span + 1
    h = torch.cat([h[:, :half] * scale, h[:, half:]], dim=1)
    return h, fourier_filter(skip, threshold=1, scale=s)

"""FreeU (Si et al., CVPR 2024), as diffusers' `enable_freeu` applies it: in the UNet's first two up-block stages, the
backbone features' first half of the channels × b1 (b2), and the skip features' lowest frequencies × s1 (s2). It
is the paper's form (ComfyUI's FreeU node), not ComfyUI's FreeU_V2, which scales the backbone by each feature's
normalised mean. The frames are folded into the batch, so each frame is filtered on its own, as in diffusers'
AnimateDiffPipeline.

diffusers' values for SD1.5: b1=1.5, b2=1.6, s1=0.9, s2=0.2; ComfyUI's defaults: b1=1.3, b2=1.4, s1=0.9, s2=0.2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

from animatediff.errors import InputError, non_negative
from animatediff.models import AnimationUNet


@dataclass(frozen=True)
class FreeU:
    """FreeU's four factors (module docstring)."""

    b1: float
    """The first up stage's backbone factor."""
    b2: float
    """The second up stage's backbone factor."""
    s1: float
    """The first up stage's skip low-frequency factor."""
    s2: float
    """The second up stage's skip low-frequency factor."""

    def __post_init__(self) -> None:
        for f in fields(self):
            non_negative(getattr(self, f.name), f"FreeU {f.name}")


def parse_free_u(spec: object, what: str = "FreeU") -> FreeU:
    """A `FreeU` from "b1=1.5,b2=1.6,s1=0.9,s2=0.2" (the CLI's and the web form's) or {b1, b2, s1, s2} (a run
    entry's), every factor named once; one line for anything else."""
    factors = spec
    if isinstance(spec, str):
        items = [item.partition("=") for item in spec.replace(" ", "").split(",") if item]
        if not all(sep for _, sep, _ in items):
            raise InputError(f"{what} {spec!r}: give b1=…,b2=…,s1=…,s2=…, e.g. b1=1.5,b2=1.6,s1=0.9,s2=0.2")
        try:
            factors = {key: float(value) for key, _, value in items}
        except ValueError:
            raise InputError(f"{what} {spec!r}: each factor must be a number") from None
    names = {f.name for f in fields(FreeU)}
    if not isinstance(factors, dict) or set(factors) != names:
        raise InputError(f"{what} {spec!r}: give b1, b2, s1 and s2, e.g. b1=1.5,b2=1.6,s1=0.9,s2=0.2")
    return FreeU(**factors)


@contextmanager
def free_u_on(unet: AnimationUNet, free_u: FreeU | None) -> Iterator[None]:
    """FreeU in `unet`'s up blocks for the block's duration (diffusers' `enable_freeu`), off again after; nothing
    for None."""
    if free_u is None:
        yield
        return
    if not isinstance(free_u, FreeU):
        raise InputError(f"free_u takes a FreeU(b1, b2, s1, s2), got {free_u!r}")
    unet.unet.enable_freeu(s1=free_u.s1, s2=free_u.s2, b1=free_u.b1, b2=free_u.b2)
    try:
        yield
    finally:
        unet.unet.disable_freeu()

"""A merged LoRA's scale ramped over the steps: animatediff-cli-prompt-travel's `lcm_map`, which ramps its LCM LoRA.

`LoraRamp(lora, start_scale, end_scale, gradient_start, gradient_end)` names a LoRA merged into the pipeline
(`pipe.add_lora` returns the name; a run entry's `lora_configs` item with a `ramp`). At step i of n its scale is
`start_scale` while (i + 1) / n is below `gradient_start`, `end_scale` once it is past `gradient_end`, and linear
between: prompt-travel's `LcmLora.apply`. The scale is set before each step's predictions (`ramped_loras`; the
merged weights are recomputed when it changes, `formats.lora.LoraMerger.set_scale`), and the scale the LoRA had is
put back after the call (`lora_scales_kept`). prompt-travel runs the LoRA unmerged at that scale; merged, the
weights are the same up to float rounding. A ramped LoRA's text-encoder part reads the prompts at its own scale, as
they are encoded before the steps (as prompt-travel's are).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from animatediff.errors import InputError
from animatediff.formats.lora import LoraMerger
from animatediff.sampling import Denoiser
from animatediff.sampling.context import step_index


@dataclass(frozen=True)
class LoraRamp:
    """One merged LoRA's scale over the steps (module docstring); the defaults are prompt-travel's `lcm_map`'s."""

    lora: str
    """The merged LoRA's name (`pipe.add_lora`'s return, `pipe.loras.active`)."""
    start_scale: float = 0.15
    end_scale: float = 0.75
    gradient_start: float = 0.2
    """The fraction of the steps until which the scale is `start_scale`."""
    gradient_end: float = 0.75
    """The fraction of the steps from which the scale is `end_scale`."""

    def __post_init__(self) -> None:
        for name in ("start_scale", "end_scale", "gradient_start", "gradient_end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"LoRA ramp {name} must be a number, got {value!r}")
        if not 0 <= self.gradient_start <= self.gradient_end <= 1:
            raise InputError(
                f"LoRA ramp: need 0 ≤ gradient_start ≤ gradient_end ≤ 1, got {self.gradient_start} and "
                f"{self.gradient_end}"
            )

    def scale_at(self, step: int, steps: int) -> float:
        """The scale at 0-based `step` of `steps`."""
        progress = (step + 1) / steps
        if progress < self.gradient_start:
            return float(self.start_scale)
        if progress > self.gradient_end:
            return float(self.end_scale)
        width = self.gradient_end - self.gradient_start
        part = 0.0 if width < 1e-4 else (progress - self.gradient_start) / width
        return float(self.start_scale + (self.end_scale - self.start_scale) * part)


def check_ramp(ramp: object, where: str) -> None:
    """A run entry's `ramp` mapping ({start_scale, end_scale, gradient_start, gradient_end}), checked; one line
    starting with `where`."""
    keys = ("start_scale", "end_scale", "gradient_start", "gradient_end")
    if not isinstance(ramp, dict) or set(ramp) - set(keys):
        raise InputError(f"{where}: expected a mapping of {', '.join(keys)}, got {ramp!r}")
    try:
        LoraRamp("entry", **ramp)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def entry_lora_ramps(configs: Sequence[dict], resolve: Callable[[str], str] = str) -> list[LoraRamp]:
    """The ramps of an entry's `lora_configs` items, each naming its LoRA as the run merges it (`image:<path>`, the
    first of that file)."""
    return [LoraRamp(f"image:{resolve(str(c['path']))}", **c["ramp"]) for c in configs if "ramp" in c]


def check_lora_ramps(ramps: Sequence[LoraRamp], loras: LoraMerger | None) -> None:
    """One line for a ramp that is not a `LoraRamp` or names no merged LoRA."""
    merged = {} if loras is None else loras.active
    for ramp in ramps:
        if not isinstance(ramp, LoraRamp):
            raise InputError(f"lora_ramps takes LoraRamp items, got {ramp!r}")
        if ramp.lora not in merged:
            raise InputError(f"LoRA ramp: no LoRA named {ramp.lora!r} is merged; merged: {sorted(merged)}")


def ramped_loras(
    denoiser: Denoiser, loras: LoraMerger | None, ramps: Sequence[LoraRamp], timesteps: torch.Tensor
) -> Denoiser:
    """`denoiser` with each ramped LoRA set to its scale at the step of every call's timestep (a step's calls, its
    windows and a FreeInit rerun of it, share one scale); `denoiser` itself without ramps."""
    if not ramps:
        return denoiser
    distinct = list(dict.fromkeys(float(t) for t in timesteps))  # a second-order scheduler's repeated ones once
    step_of, steps = step_index(torch.tensor(distinct)), len(distinct)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        step = step_of(t)
        for ramp in ramps:
            scale = ramp.scale_at(step, steps)
            if loras.active[ramp.lora] != scale:
                loras.set_scale(ramp.lora, scale)
        return denoiser(x, t)

    return denoise


@contextmanager
def lora_scales_kept(loras: LoraMerger | None, ramps: Sequence[object]) -> Iterator[None]:
    """The scales of the LoRAs `ramps` name (`LoraRamp`s, `RegionLora`s: by `.lora`) as they were, put back when the
    block ends (or fails)."""
    kept = {} if loras is None or not ramps else {r.lora: loras.active[r.lora] for r in ramps}
    try:
        yield
    finally:
        for name, scale in kept.items():
            if loras.active[name] != scale:
                loras.set_scale(name, scale)

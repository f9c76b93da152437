"""A merged LoRA confined to regions, its scale keyframed by frame: animatediff-cli-prompt-travel's `lora_map` with a
`{region, scale}` value.

`RegionLora(lora, regions, scale)` names a LoRA merged into the pipeline (`pipe.add_lora` returns the name; a run
entry's `lora_configs` item with `regions` or a `scale`). In a call it acts on the UNet only in the predictions of the
parts it names (`regions`: region indices and "background", as `ControlNet.regions` names them; empty: every part),
both halves of their guidance, and is off in the others. Its scale is `scale`, or with {frame: scale} keyframes, eased
between them as prompt-travel's `create_schedule` eases: from keyframe k₁ (value v₁) to the next k₂ (v₂), frame i
takes v₁ + ((i − k₁)/(k₂ − k₁))² · (v₂ − v₁), and the last keyframe eases to the first one past the clip's end, so the
schedule goes round. A prediction over some frames (a context window, or the whole clip) takes the scale at its middle
frame (`frames[len // 2]`), as prompt-travel takes it at its window's centre; a scale of 0 is off.

The scale is set before each of those predictions (the merged weights are recomputed when it changes,
`formats.lora.LoraMerger.set_scale`), and the scale the LoRA was merged at is put back after the call
(`lora_ramp.lora_scales_kept`). The prompts are encoded before the steps, with the LoRA's text-encoder part at that
merged scale: a run entry merges a region LoRA at its `alpha`, and a prompt-travel document's at 0.75, the scale at
which prompt-travel encodes every prompt with each region LoRA. prompt-travel runs the LoRA unmerged; merged, the
weights are the same up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from animatediff.errors import InputError
from animatediff.formats.lora import LoraMerger
from animatediff.pipeline.controlnet import control_regions
from animatediff.pipeline.prompt_travel import frame_index
from animatediff.sampling.loop import Predictor

SEQUENTIAL = (
    "LoRA scales set while sampling (region LoRAs, LoRA ramps) are merged into the weights, which sequential offload "
    "keeps out of place: use model offload"
)


@dataclass(frozen=True)
class RegionLora:
    """One merged LoRA acting in some parts of a regional call, at a scale keyframed by frame (module docstring)."""

    lora: str
    """The merged LoRA's name (`pipe.add_lora`'s return, `pipe.loras.active`)."""
    regions: tuple[int | str, ...] = ()
    """Region indices from 0 and "background" (the call's own prompt); empty: everywhere."""
    scale: float | Mapping[int, float] = 1.0
    """The scale, or {frame: scale} keyframes eased between (module docstring)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", control_regions(self.regions, "LoRA"))
        keyframes = self.scale if isinstance(self.scale, Mapping) else {0: self.scale}
        if not keyframes:
            raise InputError(f"LoRA {self.lora!r}: give a scale, or at least one {{frame: scale}} keyframe")
        for frame, value in keyframes.items():
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise InputError(f"LoRA {self.lora!r}: keyframe {frame!r} is not a frame index from 0")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"LoRA {self.lora!r}: the scale at frame {frame} must be a number, got {value!r}")

    def frame_scales(self, num_frames: int) -> list[float]:
        """The scale at each of `num_frames` frames (module docstring); one line for a keyframe past the clip."""
        if not isinstance(self.scale, Mapping):
            return [float(self.scale)] * num_frames
        keys = sorted(self.scale)
        if keys[-1] >= num_frames:
            raise InputError(f"LoRA {self.lora!r}: keyframe {keys[-1]} is past the clip's {num_frames} frames")
        scales = [0.0] * num_frames
        for start, end in zip(keys, [*keys[1:], keys[0] + num_frames]):
            low, high, span = float(self.scale[start]), float(self.scale[end % num_frames]), end - start
            for i in range(start, end):
                scales[i % num_frames] = low + ((i - start) / span) ** 2 * (high - low)
        return scales


def region_lora_keys(item: dict, where: str) -> dict:
    """A run entry's region LoRA item's `regions` and `scale` checked, keyframes as frame indices (YAML or JSON keys);
    one line starting with `where`."""
    scale = item.get("scale", 1.0)
    if isinstance(scale, Mapping):
        scale = {frame_index(frame, f"{where} scale"): value for frame, value in scale.items()}
    keys = {"regions": list(item.get("regions") or []), "scale": scale}
    try:
        RegionLora("entry", keys["regions"], scale)
    except InputError as err:
        said = str(err).removeprefix("LoRA 'entry': ")
        raise InputError(f"{where}: {said}") from None
    return keys


def entry_region_loras(configs: Sequence[dict], resolve: Callable[[str], str] = str) -> list[RegionLora]:
    """The region LoRAs of an entry's `lora_configs` items (those with `regions` or `scale`), each naming its LoRA as
    the run merges it (`image:<path>`, the first of that file)."""
    return [RegionLora(f"image:{resolve(str(c['path']))}", tuple(c.get("regions") or ()), c.get("scale", 1.0))
            for c in configs if "regions" in c or "scale" in c]  # fmt: skip


def check_region_loras(
    items: Sequence[RegionLora], loras: LoraMerger | None, ramped: Sequence[object], num_frames: int, offload: str
) -> None:
    """One line for an item that is not a `RegionLora`, names no merged LoRA, names a LoRA also ramped by step, or
    has a keyframe past the clip's `num_frames`; and for region or ramped LoRAs under sequential `offload`, which
    keeps the weights their scales are merged into out of place."""
    if (items or ramped) and offload == "sequential":
        raise InputError(SEQUENTIAL)
    merged = {} if loras is None else loras.active
    ramps = {getattr(r, "lora", None) for r in ramped}
    for item in items:
        if not isinstance(item, RegionLora):
            raise InputError(f"region_loras takes RegionLora items, got {item!r}")
        if item.lora not in merged:
            raise InputError(f"region LoRA: no LoRA named {item.lora!r} is merged; merged: {sorted(merged)}")
        if item.lora in ramps:
            raise InputError(f"LoRA {item.lora!r} is both ramped over the steps and set per region; give one")
        item.frame_scales(num_frames)


def lora_in_part(
    predict: Predictor, loras: LoraMerger, items: Sequence[RegionLora], acting: Sequence[set[int] | None], part: int,
    num_frames: int,
) -> Predictor:  # fmt: skip
    """`predict` (part `part` of a regional call; `acting`: per item, the parts it acts in, None for all) with each
    item's LoRA set before every prediction: its scale at the prediction's middle frame where it acts, else 0."""
    scales = [item.frame_scales(num_frames) if acts is None or part in acts else None
              for item, acts in zip(items, acting, strict=True)]  # fmt: skip

    def predict_with_loras(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        middle = int(frames[len(frames) // 2]) % num_frames  # a closed loop's windows wrap round the clip
        for item, per_frame in zip(items, scales, strict=True):
            scale = 0.0 if per_frame is None else per_frame[middle]
            if loras.active[item.lora] != scale:
                loras.set_scale(item.lora, scale)
        return predict(x, t, text, frames)

    return predict_with_loras

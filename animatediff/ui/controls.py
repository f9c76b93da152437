"""The form's controls: ControlNet units (each a ControlNet from the models folder with its uploaded control video,
how the video's frames become control images, its scale and the fractions of the steps it acts in; one guess mode
for all, as `generate --guess-mode`) and SparseCtrl keyframe images. Checked field by field, and written as the
`run` entry keys that load them (the studio loads its controls from that entry, as `run` does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from animatediff.errors import InputError
from animatediff.ui.catalog import Catalog
from animatediff.ui.fields import choice, number

if TYPE_CHECKING:
    from animatediff.ui.settings import Settings


@dataclass
class ControlUnit:
    """One ControlNet of the form."""

    model: str
    """A catalog id."""
    video: str
    """An upload's id: the control video, or its source with `annotator` canny."""
    scale: float = 1.0
    annotator: str = "none"
    start: float = 0.0
    end: float = 1.0
    """The fractions of the steps between which it acts."""


def parse_controls(raw: dict, s: Settings, catalog: Catalog) -> None:
    """The form's ControlNet units, guess mode, SparseCtrl encoder and keyframes, checked into `s`."""
    units = raw.get("controlnets") or []
    if not isinstance(units, list) or not all(isinstance(unit, dict) for unit in units):
        raise InputError("ControlNets: expected a list of {model, video, scale, annotator, start, end}")
    s.controlnets = [_unit(unit, f"ControlNet {i}", catalog) for i, unit in enumerate(units, 1)]
    if not isinstance(raw.get("guess_mode", False), bool):
        raise InputError(f"guess mode: expected true or false, got {raw['guess_mode']!r}")
    s.guess_mode = raw.get("guess_mode", False)
    if s.guess_mode and not s.controlnets:
        raise InputError("guess mode: add the ControlNet it is for")
    _parse_keyframes(raw, s, catalog)
    _parse_regions(raw, s)
    _parse_lora_regions(raw, s)
    _parse_ip_keyframes(raw, s)


def _unit(unit: dict, label: str, catalog: Catalog) -> ControlUnit:
    from animatediff.pipeline.annotators import ANNOTATORS
    from animatediff.pipeline.control_inputs import check_control_range

    model, video = str(unit.get("model") or ""), str(unit.get("video") or "")
    if not model:
        raise InputError(f"{label}: choose its model (the models folder's ControlNet/)")
    catalog.resolve("controlnet", model)
    if not video:
        raise InputError(f"{label}: upload its control video")
    checked = ControlUnit(
        model,
        video,
        number(unit, "scale", float, 1.0, f"{label} scale"),
        choice(unit.get("annotator") or "none", ANNOTATORS, f"{label} control images"),
        number(unit, "start", float, 0.0, f"{label} start"),
        number(unit, "end", float, 1.0, f"{label} end"),
    )
    try:
        check_control_range(checked.start, checked.end, checked.scale)
    except InputError as err:
        raise InputError(f"{label}: {err}") from None
    return checked


def _parse_keyframes(raw: dict, s: Settings, catalog: Catalog) -> None:
    s.sparsectrl = str(raw.get("sparsectrl") or "")
    rows = raw.get("keyframes") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError("keyframes: expected a list of {frame, image}")
    s.keyframes = [(number(r, "frame", int, 0, "keyframe frame"), str(r["image"])) for r in rows if r.get("image")]
    frames = [frame % s.frames if frame >= -1 else frame for frame, _ in s.keyframes]
    if any(frame < 0 or frame >= s.frames for frame in frames) or len(set(frames)) < len(frames):
        raise InputError(f"keyframes: each frame once, from 0 to {s.frames - 1} (or -1 for the last)")
    if s.sparsectrl:
        catalog.resolve("sparsectrl", s.sparsectrl)
        if not s.keyframes:
            raise InputError("SparseCtrl: upload a keyframe image")


def _parse_ip_keyframes(raw: dict, s: Settings) -> None:
    """IP-Adapter images at keyframes: rows of {frame, image (an upload's id)}, each frame once and in the clip."""
    rows = raw.get("ip_keyframes") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError("IP-Adapter keyframes: expected a list of {frame, image}")
    s.ip_keyframes = [(number(r, "frame", int, 0, "IP-Adapter keyframe frame"), str(r["image"])) for r in rows
                      if r.get("image")]  # fmt: skip
    frames = [frame for frame, _ in s.ip_keyframes] + ([0] if raw.get("ip_image") else [])
    if any(not 0 <= frame < s.frames for frame in frames) or len(set(frames)) < len(frames):
        raise InputError(f"IP-Adapter keyframes: each frame once, from 0 to {s.frames - 1} (the image prompt is 0's)")


def ip_images(s: Settings, upload: Callable[[str], str] = str) -> str | dict[int, list[str]]:
    """The form's image prompt: its image, or with keyframe images {frame: [path]} (the image prompt at frame 0)."""
    if not s.ip_keyframes:
        return upload(s.ip_image)
    keyed = {frame: [upload(image)] for frame, image in s.ip_keyframes}
    return dict(sorted((keyed | ({0: [upload(s.ip_image)]} if s.ip_image else {})).items()))


def _parse_regions(raw: dict, s: Settings) -> None:
    """Regional prompts: rows of {mask (an upload's id), prompt, image (an upload's id: its own image prompt)};
    empty rows are dropped."""
    rows = raw.get("regions") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError("regions: expected a list of {mask, prompt}")
    s.regions = []
    for i, row in enumerate(rows):
        mask, prompt = str(row.get("mask") or ""), str(row.get("prompt") or "").strip()
        image = str(row.get("image") or "")
        if mask or prompt or image:
            if not (mask and prompt):
                raise InputError(f"region {i + 1}: {'give its prompt' if mask else 'upload its mask image'}")
            s.regions.append((mask, prompt, image))
    if s.regions and s.prompt_editing:
        raise InputError("regions are drawn without prompt editing; turn prompt editing off")


def _parse_lora_regions(raw: dict, s: Settings) -> None:
    """Each LoRA row's regions ("1, 2, background": the Regional prompts rows, counted from 1 as the form shows
    them, and the background; empty: everywhere), as the run entry's region indices (from 0)."""
    s.lora_regions = []
    for i, item in enumerate(raw.get("loras") or []):
        named = [r.strip() for r in str(item.get("regions") or "").split(",") if r.strip()]
        if named and not s.regions:
            raise InputError(f"LoRA {i + 1} regions: add the Regional prompts rows it acts in")
        regions: list[int | str] = []
        for name in named:
            if name != "background" and not (name.isdigit() and 1 <= int(name) <= len(s.regions)):
                raise InputError(
                    f"LoRA {i + 1} regions: {name!r} is not a region row (1 to {len(s.regions)}) or background"
                )
            regions.append(name if name == "background" else int(name) - 1)
        s.lora_regions.append(regions)


def control_entry(s: Settings, catalog: Catalog, upload: Callable[[str], str] = str) -> dict[str, Any]:
    """The `run` entry keys of the form's controls (`upload` gives an upload's path): the ControlNets in order,
    each with its control video, control images, start and end; SparseCtrl's encoder and keyframes; the regions."""
    entry: dict[str, Any] = {}
    units = s.controlnets
    if units:
        entry["controlnet"] = [f"{catalog.resolve('controlnet', unit.model)}:{unit.scale:g}" for unit in units]
        entry["control_video"] = [upload(unit.video) for unit in units]
        entry["control_from_video"] = [unit.annotator for unit in units]
        if any((unit.start, unit.end) != (0.0, 1.0) for unit in units):
            entry["control_start"] = [unit.start for unit in units]
            entry["control_end"] = [unit.end for unit in units]
        if s.guess_mode:
            entry["guess_mode"] = True
    if s.sparsectrl:
        entry["controlnet_path"] = str(catalog.resolve("sparsectrl", s.sparsectrl))
        entry["controlnet_images"] = [upload(image) for _, image in s.keyframes]
        entry["controlnet_image_indexs"] = [frame for frame, _ in s.keyframes]
    if s.regions:
        entry["regions"] = [{"mask": upload(mask), "prompt": prompt} | ({"ip_image": [upload(image)]} if image else {})
                            for mask, prompt, image in s.regions]  # fmt: skip
    return entry


def stored_units(data: dict) -> list[ControlUnit]:
    """A stored history entry's ControlNet units: its `controlnets`, or, in settings stored with one ControlNet,
    that one (`controlnet`, `controlnet_scale`, `control_video`, `control_from_video`)."""
    if data.get("controlnets"):
        return [ControlUnit(**unit) for unit in data["controlnets"]]
    if data.get("controlnet"):
        return [
            ControlUnit(
                data["controlnet"],
                data.get("control_video", ""),
                data.get("controlnet_scale", 1.0),
                data.get("control_from_video", "none"),
            )
        ]
    return []

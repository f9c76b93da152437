"""ControlNets as the command line and `run` entries name them: a model file, its control video, how control images
are made of it. In two stages, so that everything is checked before any model loads and sized after:

- `read_control_inputs(specs, num_frames)`: every model is a local path or can be a hub reference, the annotator
  is known (and OpenCV installed for canny), and each control video (a video file, GIF, WebP, .npy, or a folder
  of frames: `io/video_input.py`) decodes and has the clip's frames; its first `num_frames` are kept, at its size.
- `load_controlnets(inputs, pipe, height, width, keep)`: the frames fitted to the output (scaled to cover it, then
  center-cropped), made into control images by the annotator, and each ControlNet loaded for the pipeline's base
  (`formats/controlnet.py`), or taken from `keep` (`ModelCache.control_model`): the `ControlNet`s a call takes
  (`pipeline/controlnet.py`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.annotators import ANNOTATORS, annotate, check_annotator

if TYPE_CHECKING:
    import torch

    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.masks import MaskSource

    KeepModel = Callable[[Hashable, Callable[[], torch.nn.Module]], torch.nn.Module]
    """`ModelCache.control_model`: the model a key names, loaded by the callable only when not already held."""

OPTIONS = ("--frames", "--video-stride")  # what a control video with too few frames suggests changing


def check_control_range(start: float, end: float, scale: float = 1.0) -> None:
    """A ControlNet's scale is a finite number, and 0 ≤ start < end ≤ 1 (fractions of the steps)."""
    for key, value in (("scale", scale), ("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"ControlNet {key} must be a finite number, got {value!r}")
    if not 0.0 <= start < end <= 1.0:
        raise InputError(f"ControlNet start {start} and end {end}: need 0 ≤ start < end ≤ 1 (fractions of the steps)")


@dataclass(frozen=True)
class ControlSpec:
    """One ControlNet named on the command line (`--controlnet MODEL[:SCALE] --control-video VIDEO …`) or in a
    `run` entry (`controlnet`, `control_video`, …)."""

    model: str
    """The ControlNet: a diffusers folder or hub id, or a single .pth/.safetensors file (local or on the hub)."""
    video: str
    """Its control video: a video file, GIF, WebP or .npy, or a folder of frames (PNG/JPG, in name order)."""
    scale: float = 1.0
    """How much of its residuals the UNet gets."""
    annotator: str = "none"
    """How control images are made of the video: 'canny' (edges), or 'none' (the frames are control images)."""
    start: float = 0.0
    """The fraction of the steps after which it acts, 0 … 1."""
    end: float = 1.0
    """The fraction of the steps after which it stops, start … 1."""
    guess_mode: bool = False
    """Guess mode: it sees only the conditional half of the guided batch, residuals scaled geometrically."""

    def __post_init__(self) -> None:
        check_control_range(self.start, self.end, self.scale)
        if self.annotator not in ANNOTATORS:
            raise InputError(f"ControlNet annotator {self.annotator!r}: choose one of {', '.join(ANNOTATORS)}")
        if not isinstance(self.guess_mode, bool):
            raise InputError(f"guess_mode must be true or false, got {self.guess_mode!r}")


@dataclass
class ControlInput:
    """A `ControlSpec` with its control video read: `frames` (num_frames, h, w, 3) in [0, 1], at the video's size."""

    spec: ControlSpec
    frames: np.ndarray


def parse_controlnet(text: str) -> tuple[str, float]:
    """'MODEL[:SCALE]' → (model, scale), scale 1 unless given."""
    from animatediff.formats.lora import parse_scaled_path

    try:
        return parse_scaled_path(text)
    except InputError:
        scale = text.rpartition(":")[2]
        raise InputError(
            f"{text!r}: ControlNet scale {scale!r} is not a number "
            "(use MODEL:SCALE, e.g. control_v11p_sd15_canny.pth:0.8)"
        ) from None


def per_controlnet(values: Sequence, count: int, name: str, default: object) -> list:
    """One value per ControlNet: `values` given once (for all), once per ControlNet, or not at all (`default`)."""
    values = list(values)
    if not values:
        return [default] * count
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise InputError(f"{len(values)} {name} values for {count} ControlNets: give one for all, or one each")
    return values


def read_control_inputs(
    specs: Sequence[ControlSpec], num_frames: int, options: tuple[str, str] = OPTIONS
) -> list[ControlInput]:
    """Check every spec and read its control video's first `num_frames` frames (see the module docstring)."""
    from animatediff.hub import check_reference
    from animatediff.io.video_input import read_video_input

    inputs = []
    for spec in specs:
        check_reference(spec.model, "ControlNet")
        check_annotator(spec.annotator, "ControlNet annotator")
        if not Path(spec.video).expanduser().exists():
            raise InputNotFound(f"control video not found: {spec.video}")
        inputs.append(ControlInput(spec, read_video_input(spec.video, num_frames, 1, options)))
    return inputs


def load_controlnets(
    inputs: Sequence[ControlInput],
    pipe: AnimationPipeline,
    height: int | None = None,
    width: int | None = None,
    keep: KeepModel | None = None,
    mask: MaskSource | None = None,
) -> list[ControlNet]:
    """The `ControlNet`s of `inputs` for `pipe`'s base at the output size (`height` × `width`, the base's native
    size unless given): frames fitted, annotated (`inpaint` with the video `mask`), models loaded in the pipeline's
    dtype (through `keep`, which hands back a model it already holds for the key, when given)."""
    from animatediff.io.video_input import fit_frames
    from animatediff.pipeline.controlnet import ControlNet
    from animatediff.pipeline.masks import fitted_masks

    height, width = height or pipe.native_size, width or pipe.native_size
    controlnets = []
    for item in inputs:
        spec = item.spec
        frames = fit_frames(item.frames, height, width)
        masks = None
        if spec.annotator == "inpaint" and mask is not None:
            masks = fitted_masks(mask, len(frames), height, width, (height, width), "video mask").numpy()
        frames = annotate(frames, spec.annotator, masks)
        model = controlnet_model(spec.model, pipe, keep)
        controlnets.append(ControlNet(model, frames, spec.scale, spec.start, spec.end, spec.guess_mode))
    return controlnets


def controlnet_model(path: str, pipe: AnimationPipeline, keep: KeepModel | None = None) -> torch.nn.Module:
    """The ControlNet at `path` for `pipe`'s base in its dtype, loaded, or handed back by `keep` when it holds it."""
    from animatediff.formats.controlnet import load_controlnet

    load = partial(load_controlnet, path, pipe.unet.unet, pipe.dtype)
    return keep(("controlnet", path, pipe.dtype), load) if keep is not None else load()


ENTRY_KEYS = {
    "controlnet": "controlnet",
    "video": "control_video",
    "frames": "control_frames",
    "annotator": "control_from_video",
    "start": "control_start",
    "end": "control_end",
    "guess_mode": "guess_mode",
}
"""What `run` entries call each setting (the command line's flags, with underscores); errors name them so."""


def entry_specs(
    models: Sequence[str],
    videos: Sequence[str] = (),
    frame_folders: Sequence[str] = (),
    annotators: Sequence[str] = (),
    starts: Sequence[float] = (),
    ends: Sequence[float] = (),
    guess_mode: bool = False,
    where: str = "",
    names: dict[str, str] = ENTRY_KEYS,
    resolve: Callable[[str], str] | None = None,
) -> list[ControlSpec]:
    """`ControlSpec`s from lists as the command line and `run` entries give them: `models` 'MODEL[:SCALE]'; each
    ControlNet's control video from `videos` or `frame_folders` by position (where both are given, each position
    holds one and an empty string); annotators, starts and ends given once for all or once each. `names`: what
    the errors call each setting (`ENTRY_KEYS`, or the flags); `where`: what they start with; `resolve`: where a
    model or video path given relatively lies (a `run` config's folder)."""
    prefix = f"{where}: " if where else ""
    settings = (("video", videos), ("frames", frame_folders), ("annotator", annotators), ("start", starts))
    if not models:
        given = [names[key] for key, v in (*settings, ("end", ends), ("guess_mode", guess_mode)) if v]
        if given:
            raise InputError(f"{prefix}{', '.join(given)} without {names['controlnet']} (a ControlNet to apply)")
        return []
    count = len(models)
    sources = _sources(list(videos), list(frame_folders), count, prefix, names)
    annotators = per_controlnet(annotators, count, names["annotator"], "none")
    starts = per_controlnet(starts, count, names["start"], 0.0)
    ends = per_controlnet(ends, count, names["end"], 1.0)
    specs = []
    for model, source, annotator, start, end in zip(models, sources, annotators, starts, ends):
        path, scale = parse_controlnet(model)
        if resolve is not None:
            path, source = resolve(path), resolve(source)
        try:
            specs.append(ControlSpec(path, source, scale, annotator, start, end, guess_mode))
        except InputError as err:
            raise InputError(f"{prefix}{err}") from None
    return specs


def _sources(videos: list[str], folders: list[str], count: int, prefix: str, names: dict[str, str]) -> list[str]:
    """Each ControlNet's control video: the videos or the folders in order, or by position where both are given."""
    video, frames = names["video"], names["frames"]
    for folder in filter(None, folders):
        if Path(folder).expanduser().exists() and not Path(folder).expanduser().is_dir():
            raise InputError(f"{prefix}{frames} {folder!r}: not a folder of frames (use {video})")
    if videos and folders:
        if len(videos) != count or len(folders) != count or any(bool(v) == bool(f) for v, f in zip(videos, folders)):
            raise InputError(
                f"{prefix}{video} and {frames} together: give one of them for each of the {count} ControlNets "
                "(in a run entry, two lists of that length, each position holding one path and one empty string)"
            )
        return [v or f for v, f in zip(videos, folders)]
    sources = [os.fspath(s) for s in videos or folders]
    if len(sources) != count or not all(sources):
        raise InputError(
            f"{prefix}{len(sources)} control videos ({video} or {frames}) for {count} ControlNets: give one for each"
        )
    return sources


def check_inpaint_mask(annotators: Sequence[str], mask: object, where: str) -> None:
    """One line where a ControlNet's annotator is `inpaint` but no video mask is given for it to blank."""
    if "inpaint" in annotators and not mask:
        raise InputError(f"{where}: annotator inpaint blanks the video mask's white area; give the video mask too")


def check_control_keys(values: dict, where: str) -> None:
    """A `run` entry's ControlNet keys (`ENTRY_KEYS`) checked and made lists in place: a string or number given
    for a list is a list of one; the counts, ranges and annotators as `entry_specs` checks them."""
    for key in ("controlnet", "control_video", "control_frames", "control_from_video"):
        value = values.get(key)
        value = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{where}: {key} must be a string or a list of strings, got {values[key]!r}")
        values[key] = value
    for key in ("control_start", "control_end"):
        value = values.get(key)
        value = [] if value is None else value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise InputError(f"{where}: {key} must be a number or a list of numbers, got {values[key]!r}")
        values[key] = [float(v) for v in value]
    if not isinstance(values.setdefault("guess_mode", False), bool):
        raise InputError(f"{where}: guess_mode must be true or false, got {values['guess_mode']!r}")
    entry_specs(
        values["controlnet"], values["control_video"], values["control_frames"], values["control_from_video"],
        values["control_start"], values["control_end"], values["guess_mode"], where,
    )  # fmt: skip
    check_inpaint_mask(values["control_from_video"], values.get("video_mask"), where)


def entry_control_inputs(entry: object, num_frames: int, resolve: Callable[[str], str]) -> list[ControlInput]:
    """A checked `run` entry's ControlNets (its `ENTRY_KEYS` attributes), their control videos read; `resolve`
    places relative paths (the config's folder)."""
    values = {key: getattr(entry, key) for key in ENTRY_KEYS.values()}
    specs = entry_specs(
        values["controlnet"], values["control_video"], values["control_frames"], values["control_from_video"],
        values["control_start"], values["control_end"], values["guess_mode"], resolve=resolve,
    )  # fmt: skip
    return read_control_inputs(specs, num_frames, ("L", "video_stride"))


__all__ = [
    "ControlInput",
    "ControlSpec",
    "ENTRY_KEYS",
    "check_control_range",
    "check_control_keys",
    "controlnet_model",
    "entry_control_inputs",
    "entry_specs",
    "load_controlnets",
    "parse_controlnet",
    "read_control_inputs",
]

"""Keyframe ControlNets as `run` entries give them (`keyframe_controlnets`, which prompt-travel's `controlnet_map`
becomes: `prompt_travel_controlnets`): a list of mappings, each

    model: a ControlNet (diffusers folder, hub id or single file), required
    images: a folder of control images named by their frame (0000.png, 16.png: the number is the frame), required
    scale: 1.0, start: 0.0, end: 1.0, guess_mode: false
    spread: [] (the scales of a keyframe's residuals 1, 2, … frames away: prompt-travel's control_scale_list)
    loop: true (distances wrap around the clip's ends)
    annotator: none (the images are control images) or canny (their Canny edges)
    regions: [] (where it acts with the entry's regions: their indices and "background"; prompt-travel's
    control_region_list; empty: everywhere)

`check_keyframe_control_keys` checks them while the entry is parsed; `load_keyframe_controlnets` reads the images
when the entry runs (a folder with no numbered PNG gives no ControlNet, as prompt-travel skips it; images of frames
past the clip are left out), fits them to the output size as other control images are (scaled to cover it and
center-cropped; prompt-travel stretches them), annotates them and loads the models (`pipeline.keyframe_controlnet`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.annotators import ANNOTATORS, annotate
from animatediff.pipeline.control_inputs import check_control_range, controlnet_model
from animatediff.pipeline.controlnet import control_regions

if TYPE_CHECKING:
    import numpy as np

    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.control_inputs import KeepModel
    from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet

logger = logging.getLogger("animatediff")

DEFAULTS = {"scale": 1.0, "start": 0.0, "end": 1.0, "guess_mode": False, "spread": [], "loop": True,
            "annotator": "none", "regions": []}  # fmt: skip
"""Each keyframe ControlNet's settings where it leaves them out."""
NUMBERED = re.compile(r"\d+")


def check_keyframe_control_keys(values: dict, where: str) -> None:
    """An entry's `keyframe_controlnets` checked and filled with the defaults in place (none: an empty list)."""
    items = values.get("keyframe_controlnets") or []
    if not isinstance(items, list):
        raise InputError(f"{where}: keyframe_controlnets must be a list of mappings, got {items!r}")
    checked = []
    for i, item in enumerate(items):
        name = f"{where}: keyframe_controlnets[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{name} must be a mapping with model and images, got {item!r}")
        unknown = sorted(set(item) - {"model", "images", *DEFAULTS})
        if unknown:
            raise InputError(f"{name}: unknown key {unknown[0]!r}; known: model, images, {', '.join(DEFAULTS)}")
        item = {**DEFAULTS, **item}
        for key in ("model", "images"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise InputError(f"{name}: {key} must be a path, got {item.get(key)!r}")
        spread = item["spread"]
        if not isinstance(spread, list) or not spread_numbers(spread):
            raise InputError(f"{name}: spread must be a list of numbers, got {spread!r}")
        if not isinstance(item["guess_mode"], bool) or not isinstance(item["loop"], bool):
            raise InputError(f"{name}: guess_mode and loop must be true or false")
        if item["annotator"] not in ANNOTATORS or item["annotator"] == "inpaint":
            known = ", ".join(a for a in ANNOTATORS if a != "inpaint")
            raise InputError(f"{name}: annotator {item['annotator']!r}: choose one of {known}")
        try:
            check_control_range(item["start"], item["end"], item["scale"])
            control_regions(item["regions"])
        except InputError as err:
            raise InputError(f"{name}: {err}") from None
        checked.append(item)
    values["keyframe_controlnets"] = checked


def spread_numbers(spread: object) -> bool:
    """Whether every scale of a spread is a finite number."""
    return all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in spread)


def keyframe_images(folder: str | Path, num_frames: int) -> dict[int, np.ndarray]:
    """{frame: image (h, w, 3) in [0, 1]} of the PNGs in `folder` named by a number (their frame), frames below
    `num_frames` only; {} for a folder without such files; InputNotFound for a folder that is not there."""
    from animatediff.io.video_input import read_image

    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputNotFound(f"keyframe control images: folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"keyframe control images {folder}: not a folder")
    images = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() == ".png" and NUMBERED.fullmatch(path.stem) and int(path.stem) < num_frames:
            images.setdefault(int(path.stem), path)
    return {frame: read_image(path, "control image") for frame, path in sorted(images.items())}


def load_keyframe_controlnets(
    items: list[dict],
    pipe: AnimationPipeline,
    num_frames: int,
    height: int | None,
    width: int | None,
    resolve: Callable[[str], str] = str,
    keep: KeepModel | None = None,
) -> list[KeyframeControlNet]:
    """The entry's checked `keyframe_controlnets` as `KeyframeControlNet`s for `pipe` at the output size (the base's
    native size where None; see the module docstring); `resolve` places relative paths, `keep` hands back models
    already loaded."""
    from animatediff.io.video_input import fit_frames
    from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet

    height, width = height or pipe.native_size, width or pipe.native_size
    controlnets = []
    for item in items:
        images = keyframe_images(resolve(item["images"]), num_frames)
        if not images:
            logger.warning(f"keyframe ControlNet {item['model']}: no numbered PNG in {item['images']}: not used")
            continue
        frames = [annotate(fit_frames(image[None], height, width), item["annotator"])[0] for image in images.values()]
        model = controlnet_model(resolve(item["model"]), pipe, keep)
        keyframes = dict(zip(images, frames, strict=True))
        settings = {key: item[key] for key in ("scale", "start", "end", "guess_mode", "spread", "loop", "regions")}
        controlnets.append(KeyframeControlNet(model, keyframes, **settings))
    return controlnets

"""SparseCtrl in prompt configs, as the official v3 configs give it (github.com/guoyww/AnimateDiff,
`configs/prompts/3_sparsectrl/*.yaml`, read by its `scripts/animate.py`): `controlnet_path` (the encoder),
`controlnet_config` (its inference YAML, `controlnet_additional_kwargs`), `controlnet_images` and
`controlnet_image_indexs` (keyframe images and their frames, -1 the last), `normalize_condition_images` (gray and
stretched to [0, 1]) and `controlnet_use_simplified_condition_embedding`.

`check_sparse_ctrl_keys` checks an entry's keys before anything loads; `entry_sparse_ctrls` reads the images,
fits them to the output size (scaled to cover it and center-cropped, as the official crop at the output's aspect
ratio does) and loads the encoder for the pipeline's base (or takes it from `keep`, `ModelCache.control_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from animatediff.errors import InputError, InputNotFound

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.control_inputs import KeepModel
    from animatediff.pipeline.sparse_ctrl import SparseCtrl

KEYS = ("controlnet_config", "controlnet_images", "controlnet_image_indexs", "normalize_condition_images",
        "controlnet_use_simplified_condition_embedding")  # fmt: skip


def check_sparse_ctrl_keys(values: dict, where: str) -> None:
    """An entry's SparseCtrl keys checked and normalized in place: images a list of paths, as many as indices."""
    path = values.get("controlnet_path")
    given = [key for key in KEYS if values.get(key) not in (None, "", [], False)]
    if not path:
        if given:
            raise InputError(f"{where}: {given[0]} without controlnet_path (the SparseCtrl encoder it is for)")
        values.pop("controlnet_image_indexs", None)
        return
    if not isinstance(path, str):
        raise InputError(f"{where}: controlnet_path must be a path, got {path!r}")
    images = values.get("controlnet_images") or []
    images = [images] if isinstance(images, str) else images
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise InputError(
            f"{where}: controlnet_images must be a path or a list of paths, got {values.get('controlnet_images')!r}"
        )
    indices = values.get("controlnet_image_indexs", [0])
    indices = [indices] if isinstance(indices, int) else indices
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise InputError(f"{where}: controlnet_image_indexs must be a list of frame numbers, got {indices!r}")
    if len(indices) != len(images):
        raise InputError(
            f"{where}: controlnet_image_indexs {indices} has {len(indices)} frames for {len(images)} "
            "controlnet_images; give one frame per image"
        )
    for key in ("normalize_condition_images", "controlnet_use_simplified_condition_embedding"):
        if values.get(key) is not None and not isinstance(values[key], bool):
            raise InputError(f"{where}: {key} must be true or false, got {values[key]!r}")
    values["controlnet_images"], values["controlnet_image_indexs"] = images, indices


def keyframe_frames(indices: list[int], num_frames: int, where: str) -> list[int]:
    """The official indices as frames of a clip of `num_frames` (-1: the last); each within the clip, once."""
    frames = []
    for index in indices:
        if not -num_frames <= index < num_frames:
            raise InputError(f"{where}: controlnet_image_indexs {index} is outside the clip of {num_frames} frames (L)")
        frame = index % num_frames
        if frame in frames:
            raise InputError(f"{where}: controlnet_image_indexs names frame {frame} twice")
        frames.append(frame)
    return frames


def read_keyframe_images(paths: list[str], normalize: bool, where: str) -> list[np.ndarray]:
    """The images as float32 (H, W, 3) in [0, 1]; with `normalize`, gray and stretched to [0, 1] (official)."""
    from animatediff.io.video_input import read_image

    images = []
    for path in paths:
        try:
            image = read_image(path, "controlnet_images")
        except InputNotFound as err:
            raise InputNotFound(f"{where}: {err}") from None
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        if normalize:
            gray = image.mean(axis=-1, keepdims=True)
            gray = gray - gray.min()
            image = np.repeat(gray / max(float(gray.max()), 1e-8), 3, axis=-1)
        images.append(image)
    return images


def entry_sparse_ctrls(
    entry: object,
    pipe: AnimationPipeline,
    num_frames: int,
    height: int | None,
    width: int | None,
    resolve: Callable[[str], str],
    where: str,
    keep: KeepModel | None = None,
) -> list[SparseCtrl]:
    """A checked entry's SparseCtrl (none without `controlnet_path`), loaded for `pipe`'s base (through `keep` when
    given, which hands back a model it already holds), its keyframes at the output size; `resolve` places relative
    paths."""
    if not entry.controlnet_path:
        return []
    from animatediff.formats.sparse_ctrl import load_sparse_ctrl
    from animatediff.formats.sparse_ctrl_configs import official_config
    from animatediff.io.video_input import fit_frames
    from animatediff.pipeline.sparse_ctrl import SparseCtrl

    height, width = height or pipe.native_size, width or pipe.native_size
    overrides = official_config(resolve(entry.controlnet_config)) if entry.controlnet_config else {}
    if entry.controlnet_use_simplified_condition_embedding is not None:
        overrides["simplified_embedding"] = entry.controlnet_use_simplified_condition_embedding
    frames = keyframe_frames(entry.controlnet_image_indexs, num_frames, where)
    images = read_keyframe_images(
        [resolve(p) for p in entry.controlnet_images], entry.normalize_condition_images, where
    )
    keyframes = {frame: fit_frames(image[None], height, width)[0] for frame, image in zip(frames, images)}
    path = resolve(entry.controlnet_path)
    load = partial(load_sparse_ctrl, path, pipe.unet.config, pipe.dtype, overrides)
    try:
        key = ("sparsectrl", path, pipe.dtype, repr(sorted(overrides.items())))
        model = keep(key, load) if keep is not None else load()
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    return [SparseCtrl(model, keyframes)]


__all__ = ["check_sparse_ctrl_keys", "entry_sparse_ctrls", "keyframe_frames", "read_keyframe_images"]

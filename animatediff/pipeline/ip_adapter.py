"""IP-Adapter (Ye et al. 2023, arXiv 2308.06721): an image prompt beside the text, as a pipeline call is given it.

`pipe(..., ip_adapter=IPAdapter(weights, image, scale=1.0, image_encoder=None, mask=None))`, or a list of them:
several image prompts at once (diffusers' multi-IP-Adapter form, e.g. one for the style and one for the subject),
each with its own weights, images, scale and image encoder. An `IPAdapter`'s image may be one picture, several seen
together, or pictures at keyframes ({frame: image}, animatediff-cli-prompt-travel's `ip_adapter_map`) whose
embeddings the frames between interpolate; its scale a number or one per UNet block (`pipeline/ip_scales.py`); its
mask where its image attention acts (`pipeline/masks.py`).

Here: the `IPAdapter` itself, what the command line and run entries give turned into one (`ip_adapter_option`,
`check_entry_keys`), a call's IP-Adapters as a tuple (`ip_adapters`) and checked against the clip before any model
loads (`check_ip_adapters`). What one call does with them is `pipeline/ip_call.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.hub import check_reference
from animatediff.pipeline.ip_scales import check_ip_scale
from animatediff.pipeline.masks import MaskSource, mask_frames
from animatediff.pipeline.prompt_travel import frame_index

ImageInput = str | os.PathLike | Image.Image


@dataclass(frozen=True)
class IPAdapter:
    """An image prompt for one pipeline call (see the module docstring)."""

    weights: str | os.PathLike
    """IP-Adapter weights (.safetensors or .bin in diffusers' layout: image_proj.*, ip_adapter.*): a path or a hub
    reference (owner/repo/file)."""
    image: ImageInput | Sequence[ImageInput] | Mapping[int, ImageInput | Sequence[ImageInput]]
    """The image prompt: a file or PIL image; or several, seen together (their tokens joined, as diffusers'
    `ip_adapter_image=[[a, b]]`); or keyframes {frame: image(s)}, as many images at each, whose embeddings the
    frames between interpolate (module docstring)."""
    scale: float | dict = 1.0
    """s ≥ 0, the weight of the image attention (diffusers' `set_ip_adapter_scale`): 0 the text alone, 1 as
    trained; around 0.5 leaves the text more say. Or per block of the UNet, {down, mid, up} in diffusers' layer-wise
    form, the blocks not named at 0 (`pipeline/ip_scales.py`: InstantStyle's style or layout only)."""
    image_encoder: str | os.PathLike | None = None
    """A CLIPVisionModelWithProjection folder or hub id; None: the `image_encoder` folder beside the weights file
    (h94/IP-Adapter's layout)."""
    mask: MaskSource | None = None
    """Where the image prompt acts (white): a mask image, an array (H, W) in [0, 1], or masks per frame (a folder
    of masks named by their frame, {frame: mask}; `pipeline/masks.py`); None: everywhere."""

    def __post_init__(self) -> None:
        if not isinstance(self.weights, (str, os.PathLike)) or not os.fspath(self.weights):
            raise InputError(f"IP-Adapter weights must be a path or hub reference, got {self.weights!r}")
        if isinstance(self.image, Mapping):
            frames = {frame_index(k, "IP-Adapter keyframes"): _image_list(v) for k, v in self.image.items()}
            if not frames:
                raise InputError("IP-Adapter keyframes: give at least one frame → image")
            if len({len(v) for v in frames.values()}) > 1:
                raise InputError("IP-Adapter keyframes must each hold as many images (their tokens are interpolated)")
            object.__setattr__(self, "image", dict(sorted(frames.items())))
        else:
            object.__setattr__(self, "image", _image_list(self.image))
        object.__setattr__(self, "scale", check_ip_scale(self.scale))
        encoder = self.image_encoder
        if encoder is not None and (not isinstance(encoder, (str, os.PathLike)) or not os.fspath(encoder)):
            raise InputError(f"image encoder must be a folder or hub id, got {encoder!r}")

    @property
    def images(self) -> tuple[ImageInput, ...]:
        """Every image it names (the keyframes' in frame order)."""
        if isinstance(self.image, dict):
            return tuple(i for images in self.image.values() for i in images)
        return tuple(self.image)

    @property
    def keyframes(self) -> dict[int, tuple[ImageInput, ...]] | None:
        """{frame: images} of a keyframed image prompt; None for one image prompt for every frame."""
        return self.image if isinstance(self.image, dict) else None

    def check_files(self) -> None:
        """Without loading anything: the weights, the image encoder (when named) and the image files exist (or can
        be hub references); an InputNotFound naming the first that does not."""
        check_reference(self.weights, "IP-Adapter")
        if self.image_encoder is not None:
            check_reference(self.image_encoder, "image encoder")
        for image in self.images:
            if not isinstance(image, Image.Image) and not Path(image).expanduser().is_file():
                raise InputNotFound(f"IP-Adapter image not found: {os.fspath(image)}")
        if isinstance(self.mask, (str, os.PathLike)) and not Path(self.mask).expanduser().exists():
            raise InputNotFound(f"IP-Adapter mask: file not found: {os.fspath(self.mask)}")


def _image_list(image: object) -> tuple[ImageInput, ...]:
    images = [image] if isinstance(image, (str, os.PathLike, Image.Image)) else image
    if not isinstance(images, Sequence) or not images:
        raise InputError(f"IP-Adapter image must be a file or PIL image, or a list of them, got {image!r}")
    for one in images:
        if not isinstance(one, (str, os.PathLike, Image.Image)):
            raise InputError(f"IP-Adapter image {one!r}: give a file path or a PIL image")
    return tuple(images)


def ip_adapter_option(
    weights: str | os.PathLike | None,
    images: Sequence[ImageInput] | Mapping[int, Sequence[ImageInput]] | None,
    scale: float | dict | None,
    image_encoder: str | os.PathLike | None,
    mask: MaskSource | None = None,
    names: tuple[str, ...] = ("ip_adapter", "ip_image", "ip_scale", "image_encoder", "ip_mask"),
) -> IPAdapter | None:
    """The IPAdapter of separately given options (command-line flags or config keys, called `names` in messages);
    None when neither weights nor any other option is given; `images` as {frame: images} are keyframes. Options
    without the weights, or weights without an image, are an InputError."""
    if not weights:
        given = [n for n, v in zip(names[1:], (images, scale, image_encoder, mask)) if _given(v)]
        if given:
            raise InputError(f"{given[0]} needs {names[0]}: the IP-Adapter weights it is for")
        return None
    if not images:
        raise InputError(f"{names[0]} needs {names[1]}: the image prompt")
    scale = 1.0 if scale is None else check_ip_scale(scale, names[2])
    if not isinstance(images, Mapping):
        images = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    return IPAdapter(weights, images, scale, image_encoder or None, mask if _given(mask) else None)


def _given(value: object) -> bool:
    """Whether an option holds something: not None, nor an empty text, list or mapping (an array always does)."""
    return value is not None and not (isinstance(value, (str, list, tuple, dict)) and not value)


def check_entry_keys(values: dict, where: str) -> None:
    """A prompt-config entry's IP-Adapter keys (ip_adapter, ip_image, ip_scale, image_encoder, ip_mask), checked in
    place (`ip_image` as a list, after `ip_keyframes.check_ip_image_keys`); an InputError starting with `where` for a
    wrong type or a key without the others."""
    images = values.get("ip_image")
    for key in ("ip_adapter", "image_encoder", "ip_mask"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise InputError(f"{where}: {key} must be a path, got {values[key]!r}")
    try:
        keys = ("ip_adapter", "ip_scale", "image_encoder", "ip_mask")
        weights, scale, encoder, mask = (values.get(key) for key in keys)
        ip_adapter_option(weights, images, scale, encoder, mask)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def open_images(images: Iterable[ImageInput]) -> list[Image.Image]:
    """PIL images as given; files opened as RGB (an InputError for a file that is not an image)."""
    opened = []
    for image in images:
        if isinstance(image, Image.Image):
            opened.append(image)
            continue
        path = Path(image).expanduser()
        if not path.is_file():
            raise InputNotFound(f"IP-Adapter image not found: {os.fspath(image)}")
        try:
            with Image.open(path) as file:
                opened.append(file.convert("RGB"))
        except OSError as err:
            raise InputError(f"IP-Adapter image {os.fspath(image)}: not a readable image ({err})") from None
    return opened


def ip_adapters(ip_adapter: object) -> tuple[IPAdapter, ...]:
    """A call's `ip_adapter` (None, one `IPAdapter` or a sequence of them) as a tuple; one line for anything else."""
    if ip_adapter is None:
        return ()
    adapters = (ip_adapter,) if isinstance(ip_adapter, IPAdapter) else ip_adapter
    if isinstance(adapters, Sequence) and not isinstance(adapters, str):
        for one in adapters:
            if not isinstance(one, IPAdapter):
                raise InputError(f"ip_adapter must be IPAdapters, got {type(one).__name__}")
        return tuple(adapters)
    raise InputError(f"ip_adapter must be an IPAdapter, a list of them, or None; got {type(ip_adapter).__name__}")


def check_ip_adapters(ip_adapter: IPAdapter | Sequence[IPAdapter] | None, num_frames: int) -> None:
    """One line when a keyframe of an IP-Adapter (`ip_adapters`) lies past the clip's last frame, or its mask is not
    one (`pipeline/masks.py`)."""
    for adapter in ip_adapters(ip_adapter):
        keyframes = adapter.keyframes
        if keyframes and max(keyframes) >= num_frames:
            raise InputError(
                f"IP-Adapter keyframe {max(keyframes)} is beyond the clip's last frame, {num_frames - 1} (frames "
                "count from 0)"
            )
        if adapter.mask is not None:
            mask_frames(adapter.mask, num_frames, "IP-Adapter")

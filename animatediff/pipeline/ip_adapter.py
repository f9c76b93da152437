"""IP-Adapter in the pipeline: an image prompt beside the text (Ye et al. 2023, arXiv 2308.06721).

`pipe(..., ip_adapter=IPAdapter(weights, image, scale=1.0, image_encoder=None))`, or a list of them: several image
prompts at once (diffusers' multi-IP-Adapter form, e.g. one for the style and one for the subject), each with its
own weights, images, scale and image encoder. For a call, the pipeline (`ip_adapter_call`):

1. reads the weights (`formats/ip_adapter.py`), checks they fit the base (cross-attention width, layers), and has
   diffusers' loader build the IP-Adapters' attention processors and image projections for the 2-D UNet
   (`models/ip_adapter.py`), each set to its `scale` with diffusers' `set_ip_adapter_scale`;
2. encodes each IP-Adapter's image(s) with its CLIP image encoder (loaded once for all that name it) as diffusers'
   `encode_image` does (`CLIPImageProcessor`, then the projected image embedding for the plain IP-Adapter, the
   penultimate hidden states for Plus and Full; under guidance the negative is zeros, or the hidden states of a zero
   image), once per call;
3. gives the UNet `added_cond_kwargs={"image_embeds": [...]}` at every prediction (`ImageEmbeds`, a `Condition`),
   one tensor per IP-Adapter: one row per folded frame, the same image for every video and frame, negatives for the
   unconditional half; with images at keyframes ({frame: image}, animatediff-cli-prompt-travel's `ip_adapter_map`),
   each frame's embedding interpolated between the keyframes' as the call's prompt travel interpolates its text
   (`prompt_travel.interpolate`: linear, slerp or none, going round with `prompt_travel_loop`);
With a `mask`, an IP-Adapter's image attention acts only where the mask is white (diffusers' `ip_adapter_masks`,
ComfyUI's IPAdapter attention mask): a mask image for every frame, or masks per frame (a folder of masks named by
their frame, {frame: mask}; `pipeline/masks.py`), fitted to the output's size as region masks are; diffusers then
attends the IP-Adapter's images one by one, each under the mask, and sums them, where without a mask their tokens
are joined.

4. switches the IP-Adapters' processors into the UNet around each prediction only (`IPAdapterCall.around`), so
   every call without `ip_adapter` runs the plain UNet, with its shared-context processors, exactly as before.

Under context windows each window's call gets embeddings for its own frames; FreeNoise runs the whole clip at once.
The pipeline keeps the last IP-Adapters' layers and image encoders loaded for its next call (`release_ip_adapter`
drops them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from animatediff.errors import InputError, InputNotFound
from animatediff.formats.ip_adapter import (
    check_image_encoder,
    check_ip_adapter,
    default_image_encoder,
    image_embed_width,
    load_image_encoder,
    read_ip_adapter,
)
from animatediff.hub import check_reference
from animatediff.models.ip_adapter import IPAdapterLayers
from animatediff.pipeline.ip_scales import check_ip_scale, check_scale_blocks
from animatediff.pipeline.masks import MaskSource, fitted_masks, mask_frames
from animatediff.pipeline.prompt_travel import frame_index, interpolate
from animatediff.sampling import Predictor

if TYPE_CHECKING:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from animatediff.pipeline.animation import AnimationPipeline

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


class ImageEmbeds:
    """The IP-Adapters' `Condition`: `image_embeds` for every UNet call, with frames folded into the batch, and
    their masks (`ip_adapter_masks`) where they have them."""

    def __init__(
        self,
        conds: Sequence[torch.Tensor],
        unconds: Sequence[torch.Tensor] | None = None,
        masks: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        """`conds`, per IP-Adapter: (1, images, …), what its image encoder gave, for every frame; or (clip frames,
        images, …), one per frame of the whole clip. `unconds`, per IP-Adapter (1, images, …), their negatives, for
        guided calls (x holds the unconditional videos first); None for unguided ones. `masks`, per IP-Adapter:
        None, or (1 or clip frames, H, W) at the output's size, where its image attention acts."""
        self.conds = list(conds)
        self.unconds = None if unconds is None else list(unconds)
        self.masks = list(masks) if masks is not None and any(m is not None for m in masks) else None

    def unet_kwargs(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
    ) -> dict[str, object]:
        videos, num_frames = x.shape[0], x.shape[2]
        conditional = videos if self.unconds is None else videos // 2
        embeds = []
        for i, cond in enumerate(self.conds):
            # Videos are folded as (b f), frame fastest: each video's rows are its frames'.
            if cond.shape[0] == 1:
                rows = cond.expand(conditional, *cond.shape[1:]).repeat_interleave(num_frames, dim=0)
            else:  # per frame: the rows of this call's frames (a context window's own), for every video
                rows = cond[frames.to(cond.device)].repeat(conditional, *[1] * (cond.dim() - 1))
            if self.unconds is not None:
                negative = self.unconds[i].expand(videos - conditional, *self.unconds[i].shape[1:])
                rows = torch.cat([negative.repeat_interleave(num_frames, dim=0), rows])
            embeds.append(rows)
        kwargs: dict[str, object] = {"added_cond_kwargs": {"image_embeds": embeds}}
        if self.masks is not None:
            masks = [None if m is None else _mask_rows(m, c.shape[1], videos, frames) for m, c in zip(
                self.masks, self.conds, strict=True)]  # fmt: skip
            kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
        return kwargs


def _mask_rows(mask: torch.Tensor, images: int, videos: int, frames: torch.Tensor) -> torch.Tensor:
    """One IP-Adapter's mask as diffusers' processors take it, (1 or rows, images, H, W): one mask for the whole
    batch, or each folded row (every video's frames) its frame's."""
    if mask.shape[0] == 1:
        return mask[:, None].expand(1, images, *mask.shape[1:])
    rows = mask[frames.to(mask.device)].repeat(videos, 1, 1)
    return rows[:, None].expand(-1, images, *mask.shape[1:])


@torch.no_grad()
def encode_images(
    encoder: CLIPVisionModelWithProjection,
    processor: CLIPImageProcessor,
    images: list[Image.Image],
    hidden_states: bool,
    guided: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, uncond or None) of shape (1, images, …), as diffusers' `encode_image` and
    `prepare_ip_adapter_image_embeds` make them for one IP-Adapter and one video."""
    param = next(encoder.parameters())
    pixels = processor(images, return_tensors="pt").pixel_values.to(device=param.device, dtype=param.dtype)
    if hidden_states:
        cond = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        uncond = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2] if guided else None
    else:
        cond = encoder(pixels).image_embeds
        uncond = torch.zeros_like(cond) if guided else None
    return cond[None], None if uncond is None else uncond[None]


@dataclass
class _Loaded:
    """What a pipeline keeps between calls for the IP-Adapters it last used."""

    key: tuple
    layers: IPAdapterLayers
    encoders: list[tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]]
    """Per IP-Adapter, its image encoder and processor (the same objects for IP-Adapters naming the same)."""


def _encoder_path(ip_adapter: IPAdapter, weights: Path) -> str | os.PathLike:
    if ip_adapter.image_encoder is not None:
        return ip_adapter.image_encoder
    path = default_image_encoder(weights)
    if not path.is_dir():
        raise InputError(
            f"IP-Adapter {os.fspath(ip_adapter.weights)}: no image encoder; name its CLIPVisionModelWithProjection "
            f"folder or hub id (image_encoder=, --image-encoder), or put it at {path}"
        )
    return path


def _load(pipe: AnimationPipeline, adapters: tuple[IPAdapter, ...]) -> _Loaded:
    unet = pipe.unet.unet
    named = tuple((os.fspath(a.weights), os.fspath(a.image_encoder or "")) for a in adapters)
    key = (named, pipe.device, pipe.dtype)
    loaded = vars(pipe).get("_ip_adapter")
    if loaded is not None and loaded.key == key and loaded.layers.unet is unet:
        return loaded
    vars(pipe).pop("_ip_adapter", None)  # the old ones' encoders leave memory before the next load
    state_dicts, encoders = [], []
    opened: dict[str, tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]] = {}
    for ip_adapter in adapters:
        state_dict, path = read_ip_adapter(ip_adapter.weights)
        kind = check_ip_adapter(state_dict, unet, os.fspath(ip_adapter.weights))
        encoder_path = _encoder_path(ip_adapter, path)
        width, field = image_embed_width(state_dict, kind)
        found = opened.get(os.fspath(encoder_path))
        check_image_encoder(encoder_path, width, field, None if found is None else found[0].config)
        if found is None:
            found = opened[os.fspath(encoder_path)] = load_image_encoder(encoder_path, pipe.dtype, pipe.device)
        state_dicts.append(state_dict)
        encoders.append(found)
    loaded = _Loaded(key, IPAdapterLayers(unet, state_dicts), encoders)
    vars(pipe)["_ip_adapter"] = loaded
    return loaded


def release_ip_adapter(pipe: AnimationPipeline) -> None:
    """Drop the IP-Adapter layers and image encoders the pipeline keeps for its next call (the UNet never holds
    them between calls)."""
    vars(pipe).pop("_ip_adapter", None)


class IPAdapterCall:
    """One pipeline call's IP-Adapters: their condition, and the processors switched in around each prediction."""

    def __init__(self, layers: IPAdapterLayers | None = None, condition: ImageEmbeds | None = None) -> None:
        self.layers = layers
        self.conditions = () if condition is None else (condition,)

    def around(self, predict: Predictor) -> Predictor:
        """`predict` with the IP-Adapters' processors and projections in the UNet during each call; without an
        IP-Adapter, `predict` itself."""
        layers = self.layers
        if layers is None:
            return predict

        def predict_with_image(
            x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: torch.Tensor
        ) -> torch.Tensor:
            with layers.installed():
                return predict(x, t, text, frames)

        return predict_with_image

    def half(self, negative: bool) -> IPAdapterCall:
        """This call for an unguided prediction of one half of its guidance: the negative images' embeddings with
        `negative`, else the images' (parts sharing one unconditional prediction, `regions.regional`)."""
        if not self.conditions:
            return self
        embeds = self.conditions[0]
        return IPAdapterCall(self.layers, ImageEmbeds(embeds.unconds if negative else embeds.conds, None, embeds.masks))

    def negative_embeds(self) -> list[torch.Tensor] | None:
        """The negative images' embeddings under guidance, per IP-Adapter; None without an IP-Adapter or guidance."""
        return self.conditions[0].unconds if self.conditions else None


def same_negative_images(calls: list[IPAdapterCall | None]) -> bool:
    """Whether every call (None: none of its own) guides from the same negative image embeddings, as the calls of
    the same IP-Adapters do whatever their images (zeros, or the encoder's reading of zeros), unless their numbers
    of images differ."""
    first, *others = [c.negative_embeds() for c in calls if c is not None]

    def same(a: list[torch.Tensor] | None, b: list[torch.Tensor] | None) -> bool:
        if a is None or b is None:
            return a is b
        return len(a) == len(b) and all(x is y or torch.equal(x, y) for x, y in zip(a, b))

    return all(same(first, n) for n in others)


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


def _mask(ip_adapter: IPAdapter, num_frames: int, size: tuple[int, int]) -> torch.Tensor | None:
    """The IP-Adapter's mask at the output's `size`: (1, H, W) where it is one for every frame, else (frames, H, W);
    None without a mask."""
    if ip_adapter.mask is None:
        return None
    masks = fitted_masks(ip_adapter.mask, num_frames, *size, size, "IP-Adapter")
    return masks[:1] if bool((masks == masks[:1]).all()) else masks


def _embeds(
    ip_adapter: IPAdapter,
    images: list[tuple[int, list[Image.Image]]],
    encoder: tuple[CLIPVisionModelWithProjection, CLIPImageProcessor],
    hidden: bool,
    guided: bool,
    travel: tuple[int, str, bool],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, uncond) of one IP-Adapter's opened `images` [(frame, images)]: keyframes each encoded on their own,
    the clip's frames interpolated between them (`travel`: frames, interpolation, loop)."""
    encoded = {frame: encode_images(*encoder, group, hidden, guided) for frame, group in images}
    cond, uncond = encoded[images[0][0]]
    if ip_adapter.keyframes is not None:
        own = {frame: c[0].float() for frame, (c, _) in encoded.items()}
        cond = interpolate(own, *travel).to(cond.dtype)
    return cond, uncond


def ip_adapter_call(
    pipe: AnimationPipeline,
    ip_adapter: IPAdapter | Sequence[IPAdapter] | None,
    guided: bool,
    num_frames: int = 1,
    interpolation: str = "linear",
    loop: bool = False,
    size: tuple[int, int] | None = None,
) -> IPAdapterCall:
    """Load (or reuse), check and scale the IP-Adapter(s) (`ip_adapters`) for `pipe`'s UNet and encode their
    images; `guided`: the call runs classifier-free guidance (negatives needed). Keyframed images (checked against
    the clip beforehand, `check_ip_adapters`): each keyframe's encoded on its own, the clip's `num_frames` frames
    interpolated between them by `interpolation`, going round with `loop` (`prompt_travel.interpolate`). Masks are
    fitted to `size` (height, width), the output's. None or an empty list: nothing to do."""
    adapters = ip_adapters(ip_adapter)
    if not adapters:
        return IPAdapterCall()
    groups = [list((a.keyframes or {0: a.images}).items()) for a in adapters]
    opened = [[(frame, open_images(images)) for frame, images in g] for g in groups]  # before any model loads
    loaded = _load(pipe, adapters)
    for adapter in adapters:
        check_scale_blocks(adapter.scale, pipe.unet.unet)
    loaded.layers.set_scale([a.scale for a in adapters])
    travel = (num_frames, interpolation, loop)
    embeds = [
        _embeds(a, images, encoder, hidden, guided, travel)
        for a, images, encoder, hidden in zip(adapters, opened, loaded.encoders, loaded.layers.takes_hidden_states)
    ]
    unconds = [u for _, u in embeds] if guided else None
    if size is None and any(a.mask is not None for a in adapters):
        raise ValueError("an IP-Adapter's mask needs the output's size")
    masks = [_mask(a, num_frames, size) for a in adapters] if size is not None else None
    return IPAdapterCall(loaded.layers, ImageEmbeds([c for c, _ in embeds], unconds, masks))

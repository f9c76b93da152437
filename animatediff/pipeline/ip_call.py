"""One pipeline call's IP-Adapters (`pipeline/ip_adapter.py`): loaded, their images encoded, and given to every
prediction. For a call, the pipeline (`ip_adapter_call`):

1. reads the weights (`formats/ip_adapter.py`), checks they fit the base (cross-attention width, layers), and has
   diffusers' loader build the IP-Adapters' attention processors and image projections for the 2-D UNet
   (`models/ip_adapter.py`), each set to its scale with diffusers' `set_ip_adapter_scale`;
2. encodes each IP-Adapter's image(s) with its CLIP image encoder (loaded once for all that name it) as diffusers'
   `encode_image` does (`CLIPImageProcessor`, then the projected image embedding for the plain IP-Adapter, the
   penultimate hidden states for Plus and Full; under guidance the negative is zeros, or the hidden states of a zero
   image), once per call;
3. gives the UNet `added_cond_kwargs={"image_embeds": [...]}` at every prediction (`ImageEmbeds`, a `Condition`),
   one tensor per IP-Adapter: one row per folded frame, the same image for every video and frame, negatives for the
   unconditional half; with images at keyframes, each frame's embedding interpolated between the keyframes' as the
   call's prompt travel interpolates its text (`prompt_travel.interpolate`: linear, slerp or none, going round with
   `prompt_travel_loop`); with a mask, `cross_attention_kwargs={"ip_adapter_masks": [...]}` (diffusers' masks,
   ComfyUI's IPAdapter attention mask), fitted to the output's size as region masks are, one for the whole batch or
   each folded row its frame's: diffusers then attends the IP-Adapter's images one by one, each under the mask, and
   sums them, where without a mask their tokens are joined;
4. switches the IP-Adapters' processors into the UNet around each prediction only (`IPAdapterCall.around`), so
   every call without `ip_adapter` runs the plain UNet, with its shared-context processors, exactly as before.

Under context windows each window's call gets embeddings (and masks) for its own frames; FreeNoise runs the whole
clip at once. The pipeline keeps the last IP-Adapters' layers and image encoders loaded for its next call
(`release_ip_adapter` drops them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from animatediff.errors import InputError
from animatediff.formats.ip_adapter import (
    check_image_encoder,
    check_ip_adapter,
    default_image_encoder,
    image_embed_width,
    load_image_encoder,
    read_ip_adapter,
)
from animatediff.models.ip_adapter import IPAdapterLayers
from animatediff.pipeline.ip_adapter import IPAdapter, ip_adapters, open_images
from animatediff.pipeline.ip_scales import check_scale_blocks
from animatediff.pipeline.masks import fitted_masks
from animatediff.pipeline.prompt_travel import interpolate
from animatediff.sampling import Predictor

if TYPE_CHECKING:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from animatediff.pipeline.animation import AnimationPipeline


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

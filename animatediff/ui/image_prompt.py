"""The web form's image prompt (IP-Adapter): its model, uploaded image or images at keyframes, scale (or a scale per
UNet block), image encoder and uploaded mask; and a second image prompt drawn at once (its model, one uploaded image,
its scale, the image encoder beside its file); checked field by field and made the pipeline's `IPAdapter`s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.pipeline.ip_scales import parse_ip_scale
from animatediff.ui.catalog import Catalog
from animatediff.ui.controls import ip_images
from animatediff.ui.fields import number

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter
    from animatediff.ui.settings import Settings

BLOCKS = "IP-Adapter scale per block"


def parse_ip_adapter(raw: dict, s: Settings, catalog: Catalog) -> None:
    """An image prompt: the IP-Adapter, its uploaded image, its scale and (optionally) its image encoder and uploaded
    mask."""
    s.ip_adapter = str(raw.get("ip_adapter") or "")
    s.ip_image = str(raw.get("ip_image") or "")
    s.ip_scale = number(raw, "ip_scale", float, 1.0, "IP-Adapter scale")
    s.image_encoder = str(raw.get("image_encoder") or "")
    s.ip_mask = str(raw.get("ip_mask") or "")
    s.ip_scale_blocks = str(raw.get("ip_scale_blocks") or "").strip()
    if not s.ip_adapter and any(image for _, _, image in s.regions):
        raise InputError("region image prompt: choose the IP-Adapter (Image prompt) it is drawn with")
    if not s.ip_adapter:
        if s.image_encoder:
            raise InputError("image encoder: choose the IP-Adapter it is for")
        if raw.get("ip_adapter_2"):
            raise InputError("second image prompt: choose the first IP-Adapter too (Image prompt)")
        return
    catalog.resolve("ip_adapter", s.ip_adapter)
    if s.image_encoder:
        catalog.resolve("image_encoder", s.image_encoder)
    if not s.ip_image and not s.ip_keyframes:
        raise InputError("IP-Adapter: upload its image prompt")
    if s.ip_scale_blocks and not isinstance(parse_ip_scale(s.ip_scale_blocks, BLOCKS), dict):
        raise InputError(f"{BLOCKS}: give the blocks, e.g. {{up: {{block_1: [0, 1, 0]}}}}, or clear it and use Scale")
    _parse_second(raw, s, catalog)


def _parse_second(raw: dict, s: Settings, catalog: Catalog) -> None:
    """The second image prompt: its IP-Adapter, uploaded image, scale and mask."""
    s.ip_adapter_2 = str(raw.get("ip_adapter_2") or "")
    s.ip_image_2 = str(raw.get("ip_image_2") or "")
    s.ip_mask_2 = str(raw.get("ip_mask_2") or "")
    s.ip_scale_2 = number(raw, "ip_scale_2", float, 1.0, "second IP-Adapter scale")
    if not s.ip_adapter_2:  # an upload left from an earlier run is not drawn, as the first's
        return
    catalog.resolve("ip_adapter", s.ip_adapter_2)
    if not s.ip_image_2:
        raise InputError("second IP-Adapter: upload its image prompt")


def ip_adapters_of(s: Settings, catalog: Catalog, upload: Callable[[str], str] = str) -> list[IPAdapter]:
    """The image prompts the form asks for, the first's then the second's (none without an IP-Adapter); `upload`
    gives an upload's path."""
    if not s.ip_adapter:
        return []
    from animatediff.pipeline.ip_adapter import IPAdapter

    encoder = str(catalog.resolve("image_encoder", s.image_encoder)) if s.image_encoder else None
    images = ip_images(s, upload)
    mask = upload(s.ip_mask) if s.ip_mask else None
    scale = parse_ip_scale(s.ip_scale_blocks, BLOCKS) if s.ip_scale_blocks else s.ip_scale
    adapters = [IPAdapter(str(catalog.resolve("ip_adapter", s.ip_adapter)), images, scale, encoder, mask)]
    if s.ip_adapter_2:
        weights = str(catalog.resolve("ip_adapter", s.ip_adapter_2))
        mask_2 = upload(s.ip_mask_2) if s.ip_mask_2 else None
        adapters.append(IPAdapter(weights, upload(s.ip_image_2), s.ip_scale_2, mask=mask_2))
    return adapters

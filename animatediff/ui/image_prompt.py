"""The web form's image prompt (IP-Adapter): its model, uploaded image or images at keyframes, scale and image
encoder, checked field by field and made the pipeline's `IPAdapter`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.ui.catalog import Catalog
from animatediff.ui.controls import ip_images
from animatediff.ui.fields import number

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter
    from animatediff.ui.settings import Settings


def parse_ip_adapter(raw: dict, s: Settings, catalog: Catalog) -> None:
    """An image prompt: the IP-Adapter, its uploaded image, its scale and (optionally) its image encoder."""
    s.ip_adapter = str(raw.get("ip_adapter") or "")
    s.ip_image = str(raw.get("ip_image") or "")
    s.ip_scale = number(raw, "ip_scale", float, 1.0, "IP-Adapter scale")
    s.image_encoder = str(raw.get("image_encoder") or "")
    if not s.ip_adapter and any(image for _, _, image in s.regions):
        raise InputError("region image prompt: choose the IP-Adapter (Image prompt) it is drawn with")
    if not s.ip_adapter:
        if s.image_encoder:
            raise InputError("image encoder: choose the IP-Adapter it is for")
        return
    catalog.resolve("ip_adapter", s.ip_adapter)
    if s.image_encoder:
        catalog.resolve("image_encoder", s.image_encoder)
    if not s.ip_image and not s.ip_keyframes:
        raise InputError("IP-Adapter: upload its image prompt")


def ip_adapter_of(s: Settings, catalog: Catalog, upload: Callable[[str], str] = str) -> IPAdapter | None:
    """The image prompt the form asks for (None without an IP-Adapter); `upload` gives an upload's path."""
    if not s.ip_adapter:
        return None
    from animatediff.pipeline.ip_adapter import IPAdapter

    encoder = str(catalog.resolve("image_encoder", s.image_encoder)) if s.image_encoder else None
    images = ip_images(s, upload)
    return IPAdapter(str(catalog.resolve("ip_adapter", s.ip_adapter)), images, s.ip_scale, encoder)

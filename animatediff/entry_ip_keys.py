"""A run entry's image prompts: its own IP-Adapter keys (`ip_adapter`, `ip_image`, `ip_scale`, `image_encoder`,
`ip_fixed_ratio`, `ip_mask`) and `ip_adapters`, a list of further image prompts drawn at once, each a mapping of
those same keys (as `generate`'s repeated --ip-adapter):

    ip_adapter: ip-adapter-plus_sd15.safetensors
    ip_image: subject.png
    ip_adapters:
      - {ip_adapter: ip-adapter_sd15.safetensors, ip_image: style.png, ip_scale: 0.5, ip_mask: left.png}

Checked in place (`check_ip_keys`), their paths listed (`entry_ip_paths`), and made the pipeline's `IPAdapter`s in
order, the entry's own first (`entry_ip_adapters`)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.pipeline.ip_adapter import check_entry_keys, ip_adapter_option
from animatediff.pipeline.ip_keyframes import check_ip_image_keys, entry_image_paths, entry_ip_images

if TYPE_CHECKING:
    from animatediff.pipeline.ip_adapter import IPAdapter
    from animatediff.prompt_entries import PromptEntry

KEYS = ("ip_adapter", "ip_image", "ip_scale", "image_encoder", "ip_fixed_ratio", "ip_mask")
"""One image prompt's keys, the entry's own and each `ip_adapters` item's."""


def check_ip_keys(values: dict, where: str) -> None:
    """The entry's IP-Adapter keys and its `ip_adapters` items, checked and set in place (`ip_image` as lists,
    `ip_adapters` as a list); after its regions are (`region_entries.check_region_keys`). An InputError starting
    with `where`."""
    check_ip_image_keys(values, where)
    check_entry_keys(values, where)
    items = values.get("ip_adapters") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InputError(f"{where}: ip_adapters must be a list of {{ip_adapter, ip_image, ip_scale, …}} mappings")
    for i, item in enumerate(items):
        what = f"{where}: ip_adapters[{i}]"
        for name in set(item) - set(KEYS):
            close = difflib.get_close_matches(str(name), KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected {', '.join(KEYS)}"
            raise InputError(f"{what}: unknown key {name!r}{hint}")
        if not item.get("ip_adapter"):
            raise InputError(f"{what}: give ip_adapter, the IP-Adapter weights")
        check_ip_image_keys(item, what)
        check_entry_keys(item, what)
    if items and not values.get("ip_adapter"):
        raise InputError(f"{where}: ip_adapters adds to the entry's own image prompt; give ip_adapter and ip_image")
    if items and any("ip_image" in region for region in values.get("regions") or []):
        raise InputError(f"{where}: a region's ip_image is drawn with the entry's one IP-Adapter; drop ip_adapters")
    values["ip_adapters"] = items


def _image_prompts(entry: PromptEntry) -> list[dict]:
    """Each image prompt's keys: the entry's own, then its `ip_adapters` items'."""
    return [{key: getattr(entry, key) for key in KEYS}, *entry.ip_adapters]


def entry_ip_paths(entry: PromptEntry) -> list[tuple[str, str]]:
    """(key, path) of every file or folder the entry's image prompts name."""
    paths = []
    for item in _image_prompts(entry):
        paths += [(key, item.get(key) or "") for key in ("ip_adapter", "image_encoder", "ip_mask")]
        paths += [("ip_image", image) for image in entry_image_paths(item.get("ip_image") or [])]
    return paths


def entry_ip_adapters(
    entry: PromptEntry, num_frames: int, resolve: Callable[[str], str] = str
) -> tuple[IPAdapter, ...]:
    """The entry's image prompts as the pipeline's `IPAdapter`s, the entry's own first (none without
    `ip_adapter`); `resolve` places their paths; keyframes are held by `ip_fixed_ratio` over the clip's
    `num_frames` (`pipeline/ip_keyframes.py`)."""
    adapters = []
    for item in _image_prompts(entry):
        ratio, loop = item.get("ip_fixed_ratio", 0.0), entry.prompt_travel_loop
        images = entry_ip_images(item.get("ip_image") or [], num_frames, ratio, loop, resolve)
        weights, encoder, mask = (resolve(item.get(key) or "") for key in ("ip_adapter", "image_encoder", "ip_mask"))
        adapter = ip_adapter_option(weights, images, item.get("ip_scale"), encoder, mask)
        if adapter is not None:
            adapters.append(adapter)
    return tuple(adapters)

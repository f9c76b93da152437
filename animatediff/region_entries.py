"""A run entry's regional prompts (`regions`, `pipeline/regions.py`), and animatediff-cli-prompt-travel's `region_map`
read as them.

An entry's `regions` is a list, drawn over the entry's own prompt in order (a later region over an earlier one), each
item a mapping:
- `mask`: a mask image (white where the region is drawn) for every frame, or a folder of mask images named by their
  frame (0000.png, 0016.png), each held until the next;
- `prompt` (one text) or `prompt_map` ({frame: text}, travelling as the entry's prompt map does), with `head_prompt`
  and `tail_prompt` joined to each keyframe and `prompt_fixed_ratio` holding each (unset: the entry's);
- `ip_image`: the region's own image prompt for the entry's `ip_adapter`, as the entry's `ip_image` (a path, paths,
  {frame: paths} or a folder of images named by their frame) with `ip_fixed_ratio` (unset: the entry's);
- or `keep_video: true` instead of a prompt: the entry's `video` kept there (video inpainting).
The entry's `keep_background: true` keeps the video where no region is.

prompt-travel's `region_map` {"0": {...}, "1": {...}, "background": {...}}: each region switched on (`enable`) is
one item, in the order written, its `mask_dir` the mask folder (found as the entry's other paths are, beside the
config or from the working folder, not under prompt-travel's `data/`) and its `condition`'s prompt keys the item's;
`is_init_img` is `keep_video` (and the background's is `keep_background`), which needs `img2img_map`'s video; its
condition's `ip_adapter_map` switched on is the item's `ip_image` (its `input_image_dir`) and `ip_fixed_ratio` (its
`prompt_fixed_ratio`, 0.5 unless given), drawn with the entry's `ip_adapter`. The background is otherwise the entry's
own prompt and image prompt. `save_mask` and `save_input_image` are dropped; a region that crops its generation
(`crop_generation_rate`) or squares its images (`resized_to_square`) is one line: those are not drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from animatediff.errors import InputError
from animatediff.pipeline.ip_keyframes import check_ip_image_keys, entry_image_paths, entry_ip_images
from animatediff.pipeline.prompt_travel import check_fixed_ratio, compose, held_prompt_map, keyframes

if TYPE_CHECKING:
    from animatediff.pipeline.regions import Region
    from animatediff.prompt_entries import PromptEntry

ITEM_KEYS = (
    "mask", "prompt", "prompt_map", "head_prompt", "tail_prompt", "prompt_fixed_ratio", "keep_video", "ip_image",
    "ip_fixed_ratio",
)  # fmt: skip


def check_region_keys(values: dict, where: str) -> None:
    """An entry's `regions` checked in place (see the module docstring); an InputError starting with `where`."""
    items = values.get("regions")
    if not isinstance(values.get("keep_background", False), bool):
        raise InputError(f"{where}: keep_background must be true or false, got {values['keep_background']!r}")
    keeps = values.get("keep_background") or any(isinstance(i, dict) and i.get("keep_video") for i in items or [])
    if keeps and not values.get("video"):
        raise InputError(f"{where}: keeping the video in regions (keep_video, keep_background) needs a video")
    if values.get("keep_background") and not items:
        raise InputError(f"{where}: keep_background keeps the video outside the regions: give regions")
    if items is None:
        return
    if not isinstance(items, list):
        raise InputError(f"{where}: regions must be a list of {{mask, prompt}} mappings, got {items!r}")
    checked = []
    for i, item in enumerate(items):
        what = f"{where}: regions[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{what}: expected a mapping with mask and prompt, got {item!r}")
        unknown = sorted(set(item) - set(ITEM_KEYS))
        if unknown:
            raise InputError(f"{what}: unknown key {unknown[0]!r}; known keys: {', '.join(ITEM_KEYS)}")
        if not isinstance(item.get("mask"), str) or not item["mask"]:
            raise InputError(f"{what}: mask must be the path of a mask image or of a folder of them")
        if item.get("keep_video", False) not in (True, False):
            raise InputError(f"{what}: keep_video must be true or false, got {item['keep_video']!r}")
        if item.get("keep_video"):
            if "prompt" in item or "prompt_map" in item or "ip_image" in item:
                raise InputError(f"{what}: a region keeping the video has no prompt; give keep_video or a prompt")
        elif ("prompt" in item) == ("prompt_map" in item):
            raise InputError(f"{what}: give prompt (one text) or prompt_map ({{frame: text}}), one of them")
        item = dict(item)
        if "prompt_map" in item:
            item["prompt_map"] = keyframes(item["prompt_map"], f"{what} prompt_map")
        for key in ("prompt", "head_prompt", "tail_prompt"):
            if not isinstance(item.get(key, ""), str):
                raise InputError(f"{what}: {key} must be a string, got {item[key]!r}")
        if "prompt_fixed_ratio" in item:
            try:
                check_fixed_ratio(item["prompt_fixed_ratio"])
            except InputError as err:
                raise InputError(f"{what}: {err}") from None
        if "ip_image" in item:
            _check_images(item, bool(values.get("ip_adapter")), what)
        checked.append(item)
    values["regions"] = checked


def _check_images(item: dict, ip_adapter: bool, what: str) -> None:
    """A region item's own `ip_image` (as a list, or {frame: paths}) and `ip_fixed_ratio`, checked in place."""
    if not ip_adapter:
        raise InputError(f"{what}: ip_image is drawn with the entry's IP-Adapter; give ip_adapter")
    check_ip_image_keys(item, what)  # as a list, or {frame: paths}
    if not item["ip_image"]:
        raise InputError(f"{what}: ip_image names no image")


def entry_regions(entry: PromptEntry, num_frames: int, resolve: Callable[[str], str] = str) -> list[Region]:
    """The `Region`s an entry draws over a clip of `num_frames`: masks placed by `resolve`, keyframes held by the
    fixed ratio (round the clip's end under `prompt_travel_loop`), as the entry's own prompt map."""
    from animatediff.pipeline.regions import Region

    regions = []
    for item in entry.regions:
        head, tail = item.get("head_prompt", ""), item.get("tail_prompt", "")
        if item.get("keep_video"):
            prompt = None
        elif "prompt_map" in item:
            ratio = item.get("prompt_fixed_ratio", entry.prompt_fixed_ratio)
            loop_length = num_frames if entry.prompt_travel_loop else None
            prompt = held_prompt_map(item["prompt_map"], head, tail, ratio, loop_length)
        else:
            prompt = compose(item["prompt"], head, tail)
        images = item.get("ip_image")
        if images is not None:  # held as the entry's own keyframed images are
            ratio = item.get("ip_fixed_ratio", entry.ip_fixed_ratio)
            images = entry_ip_images(images, num_frames, ratio, entry.prompt_travel_loop, resolve)
        regions.append(Region(prompt, resolve(item["mask"]), ip_image=images))
    return regions


def region_map_keys(section: object, where: str) -> dict:
    """prompt-travel's `region_map` → the entry's `regions` (and `keep_background`), see the module docstring."""
    if not isinstance(section, dict):
        raise InputError(f"{where}: region_map must be a mapping, got {section!r}")
    items = _region_items(section, where)
    background = section.get("background")
    keep = isinstance(background, dict) and bool(background.get("is_init_img")) and bool(items)
    return ({"regions": items} if items else {}) | ({"keep_background": True} if keep else {})


def region_indices(section: dict, where: str) -> dict[str, int]:
    """prompt-travel's `region_map` names of the regions switched on → their indices in the entry's `regions`."""
    return {str(name): i for i, (name, _) in enumerate(_switched_on(section, where))}


def _switched_on(section: dict, where: str) -> list[tuple[str, dict]]:
    """The region_map's regions switched on, (name, region) in order; one line for one that is no mapping."""
    regions = []
    for name, region in section.items():
        if not isinstance(region, dict):
            raise InputError(f"{where}: region_map {name!r} must be a mapping, got {region!r}")
        if name != "background" and region.get("enable") is True:
            regions.append((name, region))
    return regions


def _region_items(section: dict, where: str) -> list[dict]:
    items: list[dict] = []
    for name, region in _switched_on(section, where):
        what = f"{where}: region_map {name!r}"
        if not isinstance(region.get("mask_dir"), str) or not region["mask_dir"]:
            raise InputError(f"{what}: mask_dir, the folder of its masks named by frame, is required")
        if region.get("is_init_img"):  # the input video kept there
            items.append({"mask": region["mask_dir"], "keep_video": True})
            continue
        if region.get("crop_generation_rate", 0):
            raise InputError(f"{what}: crop_generation_rate is not drawn; set it to 0 or remove it")
        condition = region.get("condition") or {}
        if not isinstance(condition, dict):
            raise InputError(f"{what}: condition must be a mapping, got {condition!r}")
        if not condition.get("prompt_map"):
            raise InputError(f"{what}: its condition needs a prompt_map, the region's {{frame: prompt}}")
        item = {"mask": region["mask_dir"], "prompt_map": condition["prompt_map"]}
        item |= {k: condition[k] for k in ("head_prompt", "tail_prompt", "prompt_fixed_ratio") if k in condition}
        images = condition.get("ip_adapter_map")
        if isinstance(images, dict) and images.get("enable") is True:  # the region's own image prompt
            if images.get("resized_to_square"):
                raise InputError(f"{what}: ip_adapter_map resized_to_square is not read here; set it false")
            if not isinstance(images.get("input_image_dir"), str) or not images["input_image_dir"]:
                raise InputError(f"{what}: ip_adapter_map needs input_image_dir, the folder of images named by frame")
            item |= {"ip_image": images["input_image_dir"], "ip_fixed_ratio": images.get("prompt_fixed_ratio", 0.5)}
        items.append(item)
    return items


def entry_mask_paths(entry: PromptEntry) -> list[str]:
    """The mask paths (images or folders) an entry's regions name."""
    return [item["mask"] for item in entry.regions]


def entry_region_image_paths(entry: PromptEntry) -> list[str]:
    """The image prompt paths (images or keyframe folders) an entry's regions name."""
    return [p for item in entry.regions if "ip_image" in item for p in entry_image_paths(item["ip_image"])]

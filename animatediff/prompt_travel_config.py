"""animatediff-cli-prompt-travel's config keys (github.com/s9roll7/animatediff-cli-prompt-travel, its
`config/prompts/*.json`) read as run-entry keys, so that such a config runs as written where it asks for what we do.

- `lora_map` {path: scale} and `motion_lora_map` {path: scale} are image LoRAs and MotionLoRAs: they join
  `lora_configs` and `motion_module_lora_configs` as [{path, alpha}], in order. A `lora_map` value {region, scale}
  is a region LoRA (`pipeline/region_loras.py`): the item's `regions` are its region_map names as region indices
  (and background), its `scale` the {frame: scale} keyframes, and its `alpha` 0.75, the scale at which prompt-travel
  encodes every prompt with the LoRA's text-encoder part.
- `clip_skip`, `vae_path` and `prompt_fixed_ratio` are entry keys of their own, meaning what they mean there.
- `output` {format, fps} is the entry's `output_format` (gif, mp4 or h264, webp) and `fps`; the encoder's own
  quality settings (`encode_param`) are kept.
- `img2img_map` switched on is video-to-video: its `init_img_dir` is the entry's `video` (a folder of frames, which
  must be numbered without gaps: prompt-travel also takes a few numbered frames and starts the others from zeros,
  which is not done here) and its `denoising_strength` the entry's `strength`. Its folder is found as the entry's
  other paths are (beside the config, or from the working folder), not under prompt-travel's `data/`.
- `controlnet_map`'s switched-on ControlNets are keyframe ControlNets (`prompt_travel_controlnets`): their folders of
  numbered control images, each image's residuals spread to the frames around it by `control_scale_list`. Its
  `controlnet_ref` switched on is the entry's `reference` (reference-only: `pipeline/reference.py`).
- `ip_adapter_map` switched on is an image prompt at keyframes: its `input_image_dir`, images named by their frame,
  is the entry's `ip_image` (`pipeline/ip_keyframes.py`), its `scale` the `ip_scale`, its `prompt_fixed_ratio` (0.5
  unless given) the `ip_fixed_ratio`; the weights are the entry's own `ip_adapter` key (prompt-travel picks them by
  `is_plus` and the like in its data/ folder, which is not read here), and a missing one is one line naming the
  file prompt-travel would use.
- `region_map`'s switched-on regions are the entry's `regions` (`region_entries`): each drawn with its own prompt
  map where its masks are white, over the entry's prompt, or keeping `img2img_map`'s video there (`is_init_img`,
  the background's too); a ControlNet's `control_region_list` names them by their region_map keys.
- `gradual_latent_hires_fix_map` switched on is the entry's `gradual_latent` ({scale, reverse_steps,
  noise_add_count}: `sampling/gradual_latent.py`).
- `lcm_map` switched on ramps the LCM LoRA's scale over the steps (`pipeline/lora_ramp.py`): the LoRA, which
  prompt-travel takes from its data/ folder, is our `lcm_lora` key, and joins `lora_configs` with the map as its
  `ramp`; and the entry samples with the LCM scheduler (on the AnimateDiff betas), which prompt-travel swaps in for
  its `scheduler` whenever the map is on.
- Sections that ask for nothing are dropped: `ip_adapter_map`, `img2img_map`, `lcm_map` and
  `gradual_latent_hires_fix_map` with `enable: false`, `apply_lcm_lora`, `is_single_prompt_mode` and `compile`
  false. So are what prompt-travel's other commands read or its runs write (`upscale_config` for tile-upscale,
  `stylize_config` for stylize, `result`) and `unet_batch_size` (how many windows one UNet call takes: speed, not
  the frames).
- Anything enabled that we do not draw (cropped regions, the preprocessors that need models) is one line naming it,
  before any model loads.

A config that is one prompt-travel document (`prompt_map` and `motion_module` at its top) also takes prompt-travel's
defaults where it leaves a key out (`DOCUMENT_DEFAULTS`): `prompt_fixed_ratio` 0.5 and `tensor_interpolation_slerp`
true; its keyframes going round (`prompt_travel_loop`: the frames after the last keyframe travel on towards the
first, and those before the first come from the last); and its prompts read as prompt-travel reads them, with
A1111's emphasis (`prompt_weighting` a1111) and past CLIP's 75 tokens in chunks (`long_prompts` chunks).
prompt-travel encodes them with diffusers' community long-prompt-weighting code, which differs in details: it
rescales a prompt's mean over all its chunks rather than each chunk's, knows no `BREAK` and no comma backtrack, and
reads at most three chunks.
"""

from __future__ import annotations

from animatediff.errors import InputError
from animatediff.prompt_travel_controlnets import keyframe_controlnets, reference_section
from animatediff.region_entries import region_indices, region_map_keys

DOCUMENT_DEFAULTS = {
    "prompt_fixed_ratio": 0.5,
    "tensor_interpolation_slerp": True,
    "prompt_travel_loop": True,
    "prompt_weighting": "a1111",
    "long_prompts": "chunks",
}
"""What a prompt-travel document means where it leaves these keys out (its `ModelConfig` defaults)."""
FALSE_SWITCHES = ("apply_lcm_lora", "is_single_prompt_mode", "compile")
"""Keys dropped when false, refused when true."""
DROPPED = ("upscale_config", "stylize_config", "result", "unet_batch_size", "lcm_lora_scale")
"""What other prompt-travel commands read, what its runs write, and speed-only settings."""
OUTPUT_FORMATS = {"gif": "gif", "mp4": "mp4", "h264": "mp4", "webp": "webp"}
"""prompt-travel's output formats we write → the file format."""
WHY = {
    "apply_lcm_lora": "the LCM LoRA switch (give the AnimateLCM LoRA in lora_map and preset animatelcm instead)",
    "is_single_prompt_mode": "single-prompt mode",
    "compile": "compiling per entry (pass run's --compile instead)",
}


def read_travel_keys(values: dict, where: str) -> dict:
    """`values` (an entry's raw keys) with prompt-travel's keys turned into ours, as the module docstring says."""
    values = dict(values)
    loras = values.pop("lora_map", None)  # read with the regions its {region, scale} values name
    motion_loras = values.pop("motion_lora_map", None)
    if motion_loras is not None:
        given = values.get("motion_module_lora_configs") or []
        values["motion_module_lora_configs"] = [*given, *_scaled_paths(motion_loras, "motion_lora_map", where)]
    img2img = values.pop("img2img_map", None)
    if _enabled(img2img):
        values.update(_img2img(img2img, values, where))
    ip_images = values.pop("ip_adapter_map", None)
    if _enabled(ip_images):
        values.update(_ip_adapter_map(ip_images, values, where))
    gradual = values.pop("gradual_latent_hires_fix_map", None)
    if _enabled(gradual):  # the section without its switch
        values["gradual_latent"] = {k: v for k, v in gradual.items() if k != "enable"}
    lcm, lcm_lora = values.pop("lcm_map", None), values.pop("lcm_lora", None)
    lcm_items = [_lcm_item(lcm, lcm_lora, where)] if _enabled(lcm) else []  # its LoRA ramped over the steps
    if lcm_items:  # sampled by LCM, as prompt-travel then samples
        values["scheduler"] = "lcm"
    for key in FALSE_SWITCHES:
        if key in values and values.pop(key):
            raise _refused(key, where)
    for key in DROPPED:
        values.pop(key, None)
    region_map = values.pop("region_map", None) or {}
    regions = region_map_keys(region_map, where)
    before = len(values.get("regions") or [])  # the entry's own regions come first
    named = {name: before + i for name, i in region_indices(region_map, where).items()}
    if "regions" in regions:
        regions["regions"] = [*(values.get("regions") or []), *regions["regions"]]
    values.update(regions)
    if loras is not None or lcm_items:
        items = [] if loras is None else _lora_items(loras, where, named)
        values["lora_configs"] = [*(values.get("lora_configs") or []), *items, *lcm_items]
    controls = values.pop("controlnet_map", None)
    if controls is not None:
        items = keyframe_controlnets(controls, where, named)  # spread to the neighbours, confined to regions
        values["keyframe_controlnets"] = [*(values.get("keyframe_controlnets") or []), *items]
        reference = reference_section(controls, where)  # its controlnet_ref: reference-only
        if reference is not None:
            values["reference"] = reference
    if "output" in values:
        values.update(_output(values.pop("output"), where))
    return values


def _items(section: object, key: str, where: str) -> list[tuple[str, object]]:
    if not isinstance(section, dict):
        raise InputError(f"{where}: {key} must be a mapping, got {section!r}")
    return list(section.items())


def _enabled(section: object) -> bool:
    return isinstance(section, dict) and section.get("enable") is True


def _lcm_item(section: dict, path: object, where: str) -> dict:
    """`lcm_map` switched on → a `lora_configs` item: the LCM LoRA (our `lcm_lora` key: prompt-travel takes it from
    its data/ folder) merged at 1 and ramped as the section says (`pipeline/lora_ramp.py`)."""
    if not isinstance(path, str) or not path:
        raise InputError(
            f"{where}: lcm_map ramps the LCM LoRA (prompt-travel's data/models/lcm_lora/sd15/"
            "pytorch_lora_weights.safetensors); give its file as lcm_lora"
        )
    keys = ("start_scale", "end_scale", "gradient_start", "gradient_end")
    unknown = sorted(set(section) - {"enable", *keys})
    if unknown:
        raise InputError(f"{where}: lcm_map: {unknown[0]!r} is not read here ({', '.join(keys)})")
    return {"path": path, "alpha": 1.0, "ramp": {k: section[k] for k in keys if k in section}}


def _refused(key: str, where: str) -> InputError:
    return InputError(f"{where}: {key} turns on {WHY[key]}, which `run` does not do; turn it off or remove it")


def _scaled_paths(mapping: object, key: str, where: str) -> list[dict]:
    """{path: scale} → [{path, alpha}]; a scale that is not one number is refused."""
    configs = []
    for path, scale in _items(mapping, key, where):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            hint = " (per-region and per-frame scales: a lora_map value {region, scale})" if key == "lora_map" else ""
            raise InputError(f"{where}: {key} {path!r}: the scale must be one number, got {scale!r}{hint}")
        configs.append({"path": str(path), "alpha": float(scale)})
    return configs


def _lora_items(mapping: object, where: str, regions: dict[str, int]) -> list[dict]:
    """`lora_map` → `lora_configs` items: {path, alpha} for a number, a region LoRA's item for {region, scale}
    (module docstring), its region names through `regions` (region_map name → region index)."""
    items = []
    for path, value in _items(mapping, "lora_map", where):
        if not isinstance(value, dict):
            items += _scaled_paths({path: value}, "lora_map", where)
            continue
        here = f"{where}: lora_map {path!r}"
        names, scale = value.get("region"), value.get("scale")
        if not isinstance(names, list) or not names or "scale" not in value:
            raise InputError(f"{here}: a {{region, scale}} value needs region, a list of the region_map's regions "
                             "switched on (or background), and scale, a number or {frame: scale}")  # fmt: skip
        missing = [r for r in names if str(r) != "background" and str(r) not in regions]
        if missing:
            raise InputError(f"{here}: region {missing[0]!r} is not one of the region_map's regions switched on")
        indices = [r if r == "background" else regions[str(r)] for r in names]
        items.append({"path": str(path), "alpha": 0.75, "regions": indices, "scale": scale})
    return items


def _img2img(section: dict, values: dict, where: str) -> dict:
    """prompt-travel's `img2img_map` switched on → {video, strength} of the entry."""
    folder = section.get("init_img_dir")
    if not isinstance(folder, str) or not folder:
        raise InputError(f"{where}: img2img_map needs init_img_dir, the folder of frames to start from")
    if values.get("video"):
        raise InputError(f"{where}: give video or img2img_map, not both")
    keys = {"video": folder}
    if "denoising_strength" in section:
        keys["strength"] = section["denoising_strength"]
    return keys


IP_ADAPTER_FILES = {"is_plus_face": "ip-adapter-plus-face_sd15", "is_full_face": "ip-adapter-full-face_sd15",
                    "is_plus": "ip-adapter-plus_sd15", "is_light": "ip-adapter_sd15_light"}  # fmt: skip
"""The h94/IP-Adapter file prompt-travel's switches pick (first switched on), else ip-adapter_sd15."""


def _ip_adapter_map(section: dict, values: dict, where: str) -> dict:
    """prompt-travel's `ip_adapter_map` switched on → the entry's IP-Adapter keys: its folder of images named by
    their frame as keyframes (`ip_image`), its scale and prompt_fixed_ratio; the weights are the entry's
    `ip_adapter` (prompt-travel picks them in its data/ folder, which is not read here)."""
    folder = section.get("input_image_dir")
    if not isinstance(folder, str) or not folder:
        raise InputError(f"{where}: ip_adapter_map needs input_image_dir, the folder of images named by their frame")
    if values.get("ip_image"):
        raise InputError(f"{where}: give ip_image or ip_adapter_map, not both")
    if not values.get("ip_adapter"):
        picked = next((name for key, name in IP_ADAPTER_FILES.items() if section.get(key) is True), "ip-adapter_sd15")
        raise InputError(
            f"{where}: ip_adapter_map draws with {picked} (h94/IP-Adapter); give its file as ip_adapter (and "
            "image_encoder, unless its image_encoder folder sits beside it)"
        )
    keys = {"ip_image": folder, "ip_fixed_ratio": section.get("prompt_fixed_ratio", 0.5)}
    if "scale" in section:
        keys["ip_scale"] = section["scale"]
    return keys


def _output(output: object, where: str) -> dict:
    """prompt-travel's `output` {format, fps, …} → {output_format, fps} of the entry."""
    keys = {}
    for name, value in _items(output, "output", where):
        if name == "format":
            if value not in OUTPUT_FORMATS:
                raise InputError(
                    f"{where}: output format {value!r}: choose one of {', '.join(OUTPUT_FORMATS)} (other codecs are "
                    "not written here)"
                )
            keys["output_format"] = OUTPUT_FORMATS[value]
        elif name == "fps":
            keys["fps"] = value
    return keys

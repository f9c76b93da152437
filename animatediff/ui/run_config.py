"""The `animatediff run` config a UI job downloads as: one entry with the form's settings, which draws the same
frames as the job did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import yaml

from animatediff.pipeline.free_u import parse_free_u
from animatediff.ui.catalog import FOLDERS, Catalog
from animatediff.ui.controls import control_entry, ip_images
from animatediff.ui.image_prompt import ip_adapters_of
from animatediff.ui.job_models import TAG_FOLDERS, spec
from animatediff.ui.reference_fields import reference_entry
from animatediff.ui.settings import Settings
from animatediff.ui.step_fractions import gradual_section, guidance_keyframes, motion_scale_keyframes


def run_entry(s: Settings, catalog: Catalog, upload: Callable[[str], str] = str) -> dict[str, Any]:
    """An `animatediff run` entry that draws the same animation (with `--fps` as the form's); `upload` gives an
    upload's path."""
    models = spec(s, catalog)
    entry: dict[str, Any] = {}
    if s.prompt_map:
        entry["prompt_map"] = dict(sorted(s.prompt_map.items()))
        entry["head_prompt"] = s.prompt
        entry["prompt_interpolation"] = s.prompt_interpolation
        if s.prompt_travel_loop:
            entry["prompt_travel_loop"] = True
    else:
        entry["prompt"] = [s.prompt]
    entry["n_prompt"] = [s.negative_prompt]
    if s.prompt_2:
        entry["prompt_2"] = s.prompt_2
    if s.negative_prompt_2:
        entry["n_prompt_2"] = s.negative_prompt_2
    if s.clip_skip != 1:
        entry["clip_skip"] = s.clip_skip
    if s.prompt_weighting != "none":
        entry["prompt_weighting"] = s.prompt_weighting
    if s.long_prompts != "truncate":
        entry["long_prompts"] = s.long_prompts
    if s.prompt_editing:
        entry["prompt_editing"] = True
    if s.prompt_and:
        entry["prompt_and"] = True
    entry["seed"] = s.seed
    entry["steps"] = s.steps
    if s.guidance_scale is not None:
        entry["guidance_scale"] = s.guidance_scale
    if s.guidance_scale_steps:
        entry["guidance_scale_steps"] = guidance_keyframes(s)
    if s.freeu:
        entry["freeu"] = asdict(parse_free_u(s.freeu))
    entry["L"] = s.frames
    for key, value in (("W", s.width), ("H", s.height)):
        if value is not None:
            entry[key] = value
    entry["base"] = models.base
    entry["motion_module"] = [models.motion_module]
    if models.dreambooth:
        entry["dreambooth_path"] = models.dreambooth
    if models.vae:
        entry["vae_path"] = models.vae
    if models.embeddings:
        entry["embeddings"] = list(models.embeddings)
    kinds = {"image": [], "adapter": [], "motion": [], "auto": []}
    for kind, path, scale in models.loras:
        kinds[kind].append({"path": path, "alpha": scale})
    if kinds["auto"]:  # the prompt's <lora:NAME:WEIGHT> tags: the entry finds them as the job did
        entry["lora_dir"] = [str(catalog.root / FOLDERS[folder]) for folder in TAG_FOLDERS]
    for item, regions in zip(kinds["image"], s.lora_regions):  # the form's own LoRAs come first, in order
        if regions:  # acting in these regions only, merged at its scale and at it there
            item |= {"regions": regions, "scale": item["alpha"]}
    if kinds["image"]:
        entry["lora_configs"] = kinds["image"]
    if kinds["adapter"]:
        entry["adapter_lora_path"] = kinds["adapter"][0]["path"]
        entry["adapter_lora_scale"] = kinds["adapter"][0]["alpha"]
    if kinds["motion"]:
        entry["motion_module_lora_configs"] = kinds["motion"]
    entry["scheduler"] = s.scheduler
    if s.ddim_eta is not None:
        entry["ddim_eta"] = s.ddim_eta
    if s.preset:
        entry["preset"] = s.preset
    for key in ("free_noise", "loop"):
        if getattr(s, key):
            entry[key] = True
    if s.context_length is not None:
        entry["context_length"] = s.context_length
    if not s.free_noise and (s.loop or s.context_length is not None):  # sliding windows: their overlap and options
        entry["context_overlap"] = s.context_overlap
        for key in ("context_schedule", "context_fuse", "context_stride", "closed_loop"):
            if getattr(s, key):
                entry[key] = getattr(s, key)
    if s.motion_scale is not None:
        entry["motion_scale"] = s.motion_scale
    if s.motion_scale_steps:
        entry["motion_scale_steps"] = motion_scale_keyframes(s)
    if s.motion_attention_scale is not None:
        entry["motion_attention_scale"] = s.motion_attention_scale
    if s.motion_attention_mask:
        entry["motion_attention_mask"] = upload(s.motion_attention_mask)
    if s.free_init_iters is not None:
        entry["free_init_iters"] = s.free_init_iters
    if s.pag_scale:
        entry["pag_scale"] = s.pag_scale
    if s.video:
        entry["video"] = upload(s.video)
        entry["strength"] = s.strength
        if s.video_mask:
            entry["video_mask"] = upload(s.video_mask)
    if s.init_image:
        entry["init_image"] = {"first": upload(s.init_image), "latent_scale": s.latent_scale}
        if s.last_frame:
            entry["init_image"] |= {"last": upload(s.last_frame), "latent_scale_last": s.latent_scale}
        entry["strength"] = s.strength
    if s.hires_scale is not None:
        entry["hires_scale"] = s.hires_scale
        entry["hires_strength"] = s.hires_strength
        if s.hires_upscaler != "pixel":
            entry["hires_upscaler"] = s.hires_upscaler
    if s.gradual_latent:
        entry["gradual_latent"] = gradual_section(s)
    entry |= control_entry(s, catalog, upload) | reference_entry(s, upload)
    adapters = ip_adapters_of(s, catalog, upload)
    if adapters:
        images = ip_images(s, upload)
        entry |= {"ip_adapter": str(adapters[0].weights), "ip_image": images if isinstance(images, dict) else [images]}
        entry["ip_scale"] = adapters[0].scale
        if adapters[0].image_encoder is not None:
            entry["image_encoder"] = str(adapters[0].image_encoder)
        if adapters[0].mask is not None:
            entry["ip_mask"] = str(adapters[0].mask)
        entry["ip_adapters"] = [{"ip_adapter": str(a.weights), "ip_image": [str(i) for i in a.images],
                                 "ip_scale": a.scale} | ({"ip_mask": str(a.mask)} if a.mask is not None else {})
                                for a in adapters[1:]]  # fmt: skip
        if not entry["ip_adapters"]:
            del entry["ip_adapters"]
    return entry


def run_yaml(s: Settings, catalog: Catalog, upload: Callable[[str], str] = str) -> str:
    """The run config's text: one entry, and a first line saying how to run it."""
    head = f"# animatediff run THIS.yaml --fps {s.fps:g}   (written by animatediff ui)\n"
    return head + yaml.safe_dump([run_entry(s, catalog, upload)], sort_keys=False, allow_unicode=True)

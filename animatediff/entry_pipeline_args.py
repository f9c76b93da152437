"""What a parsed `run` entry asks the pipeline for: its scheduler (set on the pipeline) and the keyword arguments of
the pipeline call that draws one of its videos, all but the prompt, negative prompt and seed. `animatediff run`
and the web app's jobs (which parse the run entry they download as) both draw through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from animatediff.entry_ip_keys import entry_ip_adapters
from animatediff.entry_sampling_keys import entry_context, entry_free_init, entry_free_noise, entry_scheduler
from animatediff.pipeline.control_inputs import load_controlnets
from animatediff.pipeline.free_u import FreeU
from animatediff.pipeline.gradual_latent import entry_gradual_latent
from animatediff.pipeline.hires import HiresFix
from animatediff.pipeline.image_start import entry_image_start
from animatediff.pipeline.keyframe_control_inputs import load_keyframe_controlnets
from animatediff.pipeline.lora_ramp import entry_lora_ramps
from animatediff.pipeline.pag import PAG
from animatediff.pipeline.reference import entry_reference
from animatediff.pipeline.region_loras import entry_region_loras
from animatediff.pipeline.sparse_ctrl_entries import entry_sparse_ctrls
from animatediff.region_entries import entry_regions
from animatediff.sampling import for_model

if TYPE_CHECKING:
    from animatediff.pipeline.animation import AnimationPipeline
    from animatediff.pipeline.control_inputs import ControlInput
    from animatediff.prompt_entries import PromptEntry


def entry_pag(entry: PromptEntry) -> PAG | None:
    """The entry's perturbed-attention guidance (generate's --pag-scale …); None without `pag_scale`."""
    if entry.pag_scale is None:
        return None
    return PAG(entry.pag_scale, entry.pag_adaptive_scale, tuple(entry.pag_layers))


def entry_hires(entry: PromptEntry) -> HiresFix | None:
    """The entry's hires fix (`pipeline/hires.py`), or None without `hires_scale`."""
    if entry.hires_scale is None:
        return None
    return HiresFix(entry.hires_scale, entry.hires_strength, entry.hires_steps, entry.hires_upscaler)


def entry_pipeline_args(
    entry: PromptEntry,
    pipe: AnimationPipeline,
    frames: int,
    height: int | None,
    width: int | None,
    controls: list[ControlInput],
    resolve: Callable[[str], str] = str,
    where: str = "",
    keep: Callable | None = None,
) -> dict[str, Any]:
    """Set the entry's scheduler on `pipe` and return the call's other keywords: `frames`, `height` and `width`
    where the entry gives none (the run's defaults); `controls`: its ControlNets' inputs, read beforehand
    (`entry_control_inputs`); `resolve` places the entry's paths (and gives an empty one back empty); `where` names
    it in errors; `keep`: the model cache's `control_model`, so ControlNets and SparseCtrl encoders stay loaded
    between calls."""
    num_frames, size = entry.L or frames, (entry.H or height, entry.W or width)
    pipe.scheduler = for_model(entry_scheduler(entry, resolve(entry.inference_config)), pipe.noise_settings)
    return dict(
        num_frames=num_frames, height=size[0], width=size[1], num_inference_steps=entry.steps,
        guidance_scale=entry.guidance_scale, guidance_scale_steps=entry.guidance_scale_steps,
        free_u=None if entry.freeu is None else FreeU(**entry.freeu),
        prompt_interpolation=entry.prompt_interpolation,
        prompt_travel_loop=entry.prompt_travel_loop, clip_skip=entry.clip_skip,
        prompt_weighting=entry.prompt_weighting, long_prompts=entry.long_prompts, prompt_editing=entry.prompt_editing,
        prompt_and=entry.prompt_and,
        pag=entry_pag(entry),
        prompt_2=entry.prompt_2 or None, negative_prompt_2=entry.n_prompt_2 or None,
        video=entry_image_start(entry.init_image, resolve) if entry.init_image else resolve(entry.video) or None,
        strength=entry.strength, video_stride=entry.video_stride,
        video_mask=resolve(entry.video_mask) or None,
        ip_adapter=entry_ip_adapters(entry, num_frames, resolve),
        context=entry_context(entry, num_frames), free_init=entry_free_init(entry),
        motion_scale=entry.motion_scale, motion_scale_steps=entry.motion_scale_steps,
        motion_attention_scale=entry.motion_attention_scale,
        motion_attention_scale_steps=entry.motion_attention_scale_steps,
        motion_attention_mask=resolve(entry.motion_attention_mask) or None,
        free_noise=entry_free_noise(entry),
        controlnets=[*load_controlnets(controls, pipe, *size, keep, resolve(entry.video_mask) or None),
                     *load_keyframe_controlnets(entry.keyframe_controlnets, pipe, num_frames, *size, resolve, keep)],
        sparse_ctrls=entry_sparse_ctrls(entry, pipe, num_frames, *size, resolve, where, keep),
        regions=entry_regions(entry, num_frames, resolve), keep_background=entry.keep_background,
        gradual_latent=entry_gradual_latent(entry.gradual_latent),
        lora_ramps=entry_lora_ramps(entry.lora_configs, resolve), reference=entry_reference(entry.reference, resolve),
        region_loras=entry_region_loras(entry.lora_configs, resolve),
    )  # fmt: skip

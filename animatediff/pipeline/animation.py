"""`AnimationPipeline`: start latents → text → predictor → loop → decode, with an inflated UNet.

Follows the official AnimateDiff inference (github.com/guoyww/AnimateDiff, `pipeline_animation.py`) and uses
diffusers' argument names, so the same seed gives the same video as both. Each step is a part that can be swapped
(docs/architecture.md): the text (`text.py`), the start (`start.py`), the conditions and the innermost predictor
(`conditions.py`), the predictor wrappers and the loop (`animatediff.sampling`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.base_model import DEFAULT_GUIDANCE_SCALE, BaseTraits
from animatediff.errors import InputError
from animatediff.models import AnimationUNet
from animatediff.models.motion_scale import MotionScale
from animatediff.pipeline.added_weights import AddedWeights
from animatediff.pipeline.attention_scale import attention_map, attention_scaled, check_motion_attention
from animatediff.pipeline.composed_text import and_weights, read_and, unconditional
from animatediff.pipeline.conditions import Condition, guidance_halves, unet_predictor
from animatediff.pipeline.controlnet import ControlNet, acting_parts, controlnet_conditions
from animatediff.pipeline.edited_text import edit_runs
from animatediff.pipeline.free_noise import FreeNoise, check_free_noise, free_noise_predictor
from animatediff.pipeline.free_u import FreeU, free_u_on
from animatediff.pipeline.gradual_latent import check_gradual_latent, start_noise
from animatediff.pipeline.guidance_steps import check_guidance_scale_steps, check_unguided_runs
from animatediff.pipeline.image_start import ImageStart
from animatediff.pipeline.ip_adapter import IPAdapter, check_ip_adapters
from animatediff.pipeline.ip_call import ip_adapter_call, same_negative_images
from animatediff.pipeline.keyframe_controlnet import KeyframeControlNet, seeing_clip
from animatediff.pipeline.loading import PipelineLoading
from animatediff.pipeline.lora_ramp import LoraRamp, check_lora_ramps, lora_scales_kept, ramped_loras
from animatediff.pipeline.masks import MaskSource
from animatediff.pipeline.memory import MemoryModes, check_chunk
from animatediff.pipeline.motion_scale import check_motion_scale_steps, motion_scale_runs, motion_scaled
from animatediff.pipeline.pag import PAG, check_pag, pag_guidance
from animatediff.pipeline.reference import Reference, check_reference, reference_call
from animatediff.pipeline.region_loras import RegionLora, check_region_loras, lora_in_part
from animatediff.pipeline.regions import (
    Region,
    kept_weight,
    read_regions,
    region_image_prompts,
    region_ip_calls,
    region_weights,
    regional,
    shares_unconditional,
)
from animatediff.pipeline.sdxl import sdxl_conditions, with_sdxl
from animatediff.pipeline.sizes import PipelineSizes
from animatediff.pipeline.sparse_ctrl import SparseCtrl, sparse_ctrl_conditions
from animatediff.pipeline.start import call_start
from animatediff.pipeline.text import (
    CallText,
    TextConditioning,
    call_warnings,
    check_text_reading,
    encode_text,
    read_call_text,
)
from animatediff.pipeline.video_mask import check_video_mask, kept_video
from animatediff.pipeline.video_start import VideoInput, VideoLatents, video_clip
from animatediff.sampling import Denoiser, denoise, for_model, guided, make_scheduler, windowed
from animatediff.sampling.context import ContextSchedule, context_options
from animatediff.sampling.free_init import FreeInit, free_init_denoise, seeded_generator
from animatediff.sampling.gradual_latent import GradualLatent, gradual_denoise
from animatediff.sampling.switched import merged_runs, switched_at_steps

logger = logging.getLogger("animatediff")


class AnimationPipeline(PipelineSizes, MemoryModes, AddedWeights, PipelineLoading):
    """Generates animations with an inflated UNet; build it with `from_pretrained`, `from_base`, or from parts. Its
    memory and speed switches (VAE slicing and tiling, CPU offload, FFN chunking, compile) are `pipeline/memory.py`'s
    `MemoryModes`, all at once with `apply_memory_options`; the sizes it draws, `pipeline/sizes.py`'s
    `PipelineSizes`; LoRAs and textual-inversion embeddings are added by `pipeline/added_weights.py`'s
    `AddedWeights`; `from_base` and `from_pretrained` are `pipeline/loading.py`'s `PipelineLoading`."""

    def __init__(
        self,
        tokenizer: CLIPTokenizer,
        text_encoder: CLIPTextModel,
        vae: AutoencoderKL,
        unet: AnimationUNet,
        scheduler: SchedulerMixin | None = None,
        noise_settings: dict | None = None,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        traits: BaseTraits | None = None,
        tokenizer_2: CLIPTokenizer | None = None,
        text_encoder_2: CLIPTextModelWithProjection | None = None,
    ) -> None:
        """`noise_settings` (`model_noise_settings`): how the base was trained, applied to this scheduler and kept
        for schedulers swapped in later (`for_model`). `guidance_scale`: what a call samples with when it names
        none (`from_base` takes the base's own). `traits`: the base's, whose `prompt_warnings` a call logs (words
        the base never saw, sizes it does not draw well). `tokenizer_2`, `text_encoder_2`: an SDXL base's second
        text encoder (with them the pipeline conditions as SDXL does: both encoders, pooled text, size ids)."""
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer_2 = tokenizer_2
        self.text_encoder_2 = None if text_encoder_2 is None else text_encoder_2.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.unet = unet.eval().requires_grad_(False)
        self.noise_settings = noise_settings or {}
        self.guidance_scale = guidance_scale
        self.traits = traits
        self.scheduler = for_model(scheduler or make_scheduler("ddim"), self.noise_settings)

    def to(self, device: str | torch.device) -> AnimationPipeline:
        for part in (self.text_encoder, self.text_encoder_2, self.vae, self.unet):
            if part is not None:
                part.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the models run: the offload's device under CPU offload (`pipeline/memory.py`), else the UNet's."""
        return self._offload_device if self._offload_device is not None else next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | dict[int, str],
        negative_prompt: str | list[str] | dict[int, str] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        guidance_scale_steps: dict[float, float] | None = None,
        guidance_rescale: float = 0.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        decode_chunk_size: int | None = None,
        progress: bool = True,
        callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
        context_length: int | None = None,
        context_overlap: int = 4,
        context_fuse: str = "pyramid",
        context_stride: int = 1,
        context_schedule: str = "static",
        closed_loop: bool = False,
        context: ContextSchedule | None = None,
        motion_scale: float | dict[str, float] | None = None,
        motion_scale_steps: dict[float, float | dict[str, float]] | None = None,
        motion_attention_scale: float = 1.0,
        motion_attention_scale_steps: dict[float, float] | None = None,
        motion_attention_mask: MaskSource | None = None,
        conditions: Sequence[Condition] = (),
        controlnets: Sequence[ControlNet | KeyframeControlNet] = (),
        sparse_ctrls: Sequence[SparseCtrl] = (),
        free_noise: FreeNoise | None = None,
        prompt_interpolation: str = "linear",
        prompt_travel_loop: bool = False,
        free_init: FreeInit | None = None,
        ip_adapter: IPAdapter | Sequence[IPAdapter] | None = None,
        video: VideoInput | VideoLatents | ImageStart | None = None,
        video_mask: MaskSource | None = None,
        strength: float | None = None,
        video_stride: int = 1,
        clip_skip: int = 1,
        prompt_weighting: str = "none",
        long_prompts: str = "truncate",
        pag: PAG | None = None,
        prompt_2: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        prompt_editing: bool = False,
        regions: Sequence[Region] = (),
        keep_background: bool = False,
        output_type: str = "np",
        prompt_and: bool = False,
        gradual_latent: GradualLatent | None = None,
        lora_ramps: Sequence[LoraRamp] = (),
        reference: Reference | None = None,
        region_loras: Sequence[RegionLora] = (),
        free_u: FreeU | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Frames as float32 in [0, 1], shape (videos, frames, height, width, 3); with `output_type` "latent", the
        final latents (videos, c, frames, h, w) undecoded, as diffusers' `output_type="latent"`.

        `context_length`: denoise in sliding windows of this many frames (overlapping by `context_overlap`, fused
        with `context_fuse` weights), for clips longer than the motion module's position encoding; `context_stride`,
        `context_schedule` and `closed_loop` as in `sampling.context.ContextSchedule`, or all of them as one
        `context=ContextSchedule(...)` instead of the `context_*` keywords (a seamless loop:
        `ContextSchedule(length, schedule="looped")`).
        `motion_scale`: for this call, how much of what the motion modules add is kept (`unet.motion_scale`: one
        number, or {"down", "mid", "up"} per block group; 0 = frames drawn independently, 1 = as trained); None:
        the UNet's own. `motion_scale_steps`: {fraction of the steps: motion scale}, each from the first step at or
        past its fraction on, `motion_scale` before the first (`pipeline/motion_scale.py`). `motion_attention_scale`:
        the motion modules' keys × it, × `motion_attention_mask`'s grey per pixel (`pipeline/attention_scale.py`);
        `motion_attention_scale_steps`, its keyframes by step, as `motion_scale_steps`.
        `guidance_scale`: classifier-free guidance; None takes the pipeline's (`self.guidance_scale`).
        `guidance_scale_steps`: its keyframes by step, as `motion_scale_steps` (`pipeline/guidance_steps.py`).
        `guidance_rescale`: φ of Lin et al. 2024 (0 = plain guidance), for zero-terminal-SNR bases.
        `conditions`: what else steers the UNet (`pipeline.conditions.Condition`: ControlNet-style residuals,
        image embeddings), applied at every step and to every context window's own frames.
        `controlnets`: ControlNets (`pipeline.controlnet.ControlNet`: a model, one control image per frame, scale,
        start/end fractions of the steps, guess mode) or `KeyframeControlNet`s (`pipeline/keyframe_controlnet.py`:
        images at keyframes, spread to the frames around them), bound to this call's steps and added to `conditions`.
        `sparse_ctrls`: SparseCtrl encoders (`pipeline.sparse_ctrl.SparseCtrl`: a model, keyframes {frame index:
        image}, scale, start/end, guess mode): image-to-video with a keyframe at 0, keyframe animation with several.
        `free_noise`: FreeNoise (`pipeline/free_noise.py`) for long clips: rescheduled start noise and motion modules
        attending in fused windows, the rest of the UNet on all frames; it replaces `context_length`'s windows.
        `prompt` as a dict {frame: prompt} (and `negative_prompt` as one, or one string for all frames): prompt
        travel, one video whose text embeddings are interpolated between these keyframes by `prompt_interpolation`
        ("linear", "slerp" or "none"; `pipeline.prompt_travel`), going round from the last keyframe to the first
        with `prompt_travel_loop` (as animatediff-cli-prompt-travel's do).
        `free_init`: FreeInit (`sampling/free_init.py`): the loop rerun from re-initialised noise; with it, a seed
        seeds one generator that the start, the steps and the fresh noise draw from in turn, as diffusers' does.
        `ip_adapter`: IP-Adapter (`pipeline/ip_adapter.py`): an image prompt beside the text, or a list of them at
        once, their image embeddings given to every prediction and their attention processors in the UNet during
        each prediction only; images at keyframes travel as the prompt does (`prompt_interpolation`,
        `prompt_travel_loop`).
        `video`: video-to-video (`pipeline/video_start.py`): frames (f, H, W, 3) in [0, 1] or a path (video file,
        GIF, folder of frames; `io/video_input.py`), `num_frames` of them taken every `video_stride`-th and fitted
        to height × width, encoded (or its clean latents, `VideoLatents`) and noised to the first timestep `strength`
        (in (0, 1]; default 0.8) leaves, as diffusers' AnimateDiffVideoToVideoPipeline does; a seed seeds one
        generator for the encoding and the steps. An `ImageStart` starts from a picture instead (the A1111
        extension's img2vid, `pipeline/image_start.py`): its still clip, later frames let go to noise.
        `video_mask`: video inpainting (`pipeline/video_mask.py`), the clip drawn anew only where the mask is white.
        `decode_chunk_size`: frames per VAE call (VAE slicing; None: `self.decode_chunk_size`, 16 unless set).
        `clip_skip`: the text encoder layer the prompts are taken from, counted as the UIs count it (1: the layer the
        model was trained on; 2: the one before it, as "Clip skip 2" for many anime models; diffusers' `clip_skip`
        is one less: `text_encoding`).
        `prompt_weighting`: "a1111" reads A1111's emphasis, `(words)` ×1.1, `[words]` ÷1.1, `(words:1.5)`
        (`prompt_weights`); "none" (the default, as the official code and diffusers) reads brackets as words.
        `long_prompts`: "chunks" reads a prompt longer than CLIP's 75 tokens in chunks of 75, as A1111 does, `BREAK`
        ending one early (`prompt_chunks`); "truncate" (the default, as the official code and diffusers) cuts it.
        `pag`: perturbed-attention guidance (`pipeline/pag.py`), as diffusers' AnimateDiffPAGPipeline.
        `prompt_2`, `negative_prompt_2`: SDXL's second text encoder's text, as diffusers' (default: the prompts).
        `prompt_editing`: A1111's `[from:to:when]` and `[a|b]` read in every text, which then changes during the run
        (`prompt_editing`; `when` counts the steps this run goes through); off (the default), they are words.
        `regions`: parts of the frame drawn with their own prompts where their masks are white, over the call's
        prompt as the background (`pipeline/regions.py`: prompt-travel's `region_map`); one video per call. With a
        `video`, a region whose prompt is None, and with `keep_background` the background, keep the video there.
        `prompt_and`: A1111's composable prompts (`pipeline/composed_text.py`); off (the default), `AND` is a word.
        `gradual_latent`: the gradual latent hires fix, first steps on smaller latents (`pipeline/gradual_latent.py`).
        `lora_ramps`: merged LoRAs whose scale ramps over the steps (`pipeline/lora_ramp.py`), put back after the call.
        `region_loras`: merged LoRAs acting in some regions (`pipeline/region_loras.py`), put back after the call.
        `reference`: reference-only, a picture's look read by the UNet's self-attention (`pipeline/reference.py`).
        `free_u`: FreeU in the UNet's up blocks for the call (`pipeline/free_u.py`): diffusers' `enable_freeu`, or
        ComfyUI's FreeU or FreeU_V2 (`FreeU.form`).
        """
        if output_type not in ("np", "latent"):
            raise InputError(f"output_type {output_type!r}: choose np (frames) or latent")
        guidance_scale = self.guidance_scale if guidance_scale is None else guidance_scale
        guidance_steps = check_guidance_scale_steps(guidance_scale_steps)
        guiding = max([guidance_scale, *guidance_steps.values()]) > 1.0  # guided on some steps: the negative encoded
        decode_chunk_size = self.decode_chunk_size if decode_chunk_size is None else decode_chunk_size
        check_chunk("decode_chunk_size", decode_chunk_size, "frame")
        height = height or self.native_size
        width = width or self.native_size
        context = context_options(
            context, context_length, context_overlap, context_fuse, context_stride, context_schedule, closed_loop
        )
        context_length = None if context is None else context.length
        check_free_noise(free_noise, context_length)
        attention_scale, attention_steps = check_motion_attention(motion_attention_scale, motion_attention_scale_steps)
        window = free_noise.context_length if free_noise is not None else context_length
        self.check_inputs(num_frames, height, width, num_inference_steps, window)
        sdxl = self.text_encoder_2 is not None
        check_text_reading(self.text_encoder, sdxl, clip_skip, prompt_weighting, long_prompts)
        pag_layers = check_pag(pag, self.unet)  # the perturbed layers; none without PAG
        check_reference(reference, pag)
        motion_scale_steps = check_motion_scale_steps(motion_scale_steps)
        clip = video_clip(
            video, strength, num_frames, height, width, video_stride, num_inference_steps, free_init, latents
        )  # None without a video
        keeps = keep_background or any(r.prompt is None for r in regions)
        check_video_mask(video_mask, video, num_frames, free_init, keeps)
        raw = (prompt, negative_prompt, prompt_2, negative_prompt_2)
        read = partial(read_call_text, interpolation=prompt_interpolation, num_frames=num_frames, sdxl=sdxl,
                       loop=prompt_travel_loop)  # fmt: skip
        unedited = read(raw)  # the text arguments checked before any model runs
        regional_calls = read_regions(regions, read, raw, num_frames, len(unedited.prompts), prompt_editing,
                                      video is not None, keep_background)  # fmt: skip
        parts = read_and(prompt_and, raw, read, guiding, bool(regions), prompt_editing)  # [] unless AND
        acting = acting_parts(controlnets, len(regions), bool(parts))  # per ControlNet, the regions it acts in
        lora_acting = acting_parts(region_loras, len(regions), bool(parts), "region LoRA")  # and per region LoRA
        check_ip_adapters(ip_adapter, num_frames)
        region_ips = region_image_prompts(regions, ip_adapter, num_frames)  # a region's own image prompt, or None
        spatial = {"conditions": conditions, "FreeInit": free_init}
        f = self.vae_scale_factor
        check_gradual_latent(gradual_latent, (height // f, width // f), self.size_multiple // f, spatial)
        ramped = self.loras if lora_ramps else None  # the LoRAs whose scale ramps over the steps, if any
        check_lora_ramps(lora_ramps, ramped)
        regional_loras = self.loras if region_loras else None  # the LoRAs set per region and frame, if any
        check_region_loras(region_loras, regional_loras, lora_ramps, num_frames, self.offload)

        # 1. Start: the timesteps to run, and pure noise (b, 4, f, h/8, w/8) from one CPU randn (`call_start`).
        if generator is None:  # one generator draws the start, then step noise (LCM, TCD, ancestral) and FreeInit's
            generator = seeded_generator(seed)
        shape = (len(unedited.prompts), self.unet.config.in_channels, num_frames, height // f, width // f)
        attention = attention_map(motion_attention_mask, num_frames, shape[-2:])  # None without a mask
        timesteps, latents, clean, noise = call_start(self, shape, num_inference_steps, seed, generator, latents, clip,
                                                      free_noise, decode_chunk_size)  # fmt: skip

        # 2. Text: per prompt, or per frame for prompt travel (SDXL: with its pooled text; no negative prompt is zeros
        # where the base says so); under prompt editing, per set of texts the runs of steps read (`edited_text`).
        steps = len(set(timesteps.tolist()))  # the steps this run goes through
        edits = edit_runs(prompt_editing, steps, raw)  # runs that read the same texts share one tuple of them
        calls = {id(t): unedited if t is raw else read(t) for t in {id(t): t for _, t in edits}.values()}
        read_as = (prompt_weighting, long_prompts, prompt_editing)
        texts = [*calls.values(), *regional_calls, *(t for t, _ in parts)]
        for line in call_warnings([t for t in texts if t], self.tokenizer, self.traits, height, width, *read_as):
            logger.warning(line)
        second = (self.tokenizer_2, self.text_encoder_2) if sdxl else None
        zero_negative = negative_prompt is None and self.traits is not None and self.traits.zero_empty_negative

        def encode(t: CallText) -> TextConditioning:
            return encode_text(
                self.tokenizer, self.text_encoder, t.prompts, t.negatives, guiding, self.device,
                self.dtype, t.travel, num_frames, second, zero_negative, clip_skip, prompt_weighting, long_prompts,
                *t.second,
            )  # fmt: skip

        with self.text_step():  # under offload (or free_text_encoder), the text encoders leave the device after it
            encodings = {key: encode(t) for key, t in calls.items()}
            region_texts = [None if t is None else encode(t) for t in regional_calls]
            composed = [encode(t) for t, _ in parts]  # the AND parts, the first as the background
        encoded = [(first, encodings[id(t)]) for first, t in edits]

        # 3. Predictor: the UNet with its conditions, in context windows, under guidance (per run of text).
        controls = controlnet_conditions(controlnets, self, timesteps, num_frames, height, width, guiding)
        sparse = sparse_ctrl_conditions(sparse_ctrls, self, timesteps, num_frames, height, width, guiding)
        steered = bool(conditions or controls or sparse or ip_adapter) and guiding  # read the halves
        travel = (num_frames, prompt_interpolation, prompt_travel_loop)
        ip = ip_adapter_call(self, ip_adapter, guiding, *travel, (height, width))
        ips = [ip, *region_ip_calls(self, region_ips, guiding, *travel, (height, width))]  # a region's own, or None
        ref = reference_call(self, reference, height, width, generator, guiding, decode_chunk_size)
        splits = guidance_halves([*controls, *sparse], False) is not None  # each has its guidance's halves
        cfg_runs = motion_scale_runs(guidance_scale, guidance_steps, steps)  # one run unless keyframed by step
        check_unguided_runs(cfg_runs, guiding, splits and ref is None and not conditions)

        def denoiser_for(text: TextConditioning, part: int, scale: MotionScale | None, keys: float, cfg: float,
                         negative: bool = False) -> Denoiser:  # fmt: skip
            own = ips[part] if part < len(ips) and ips[part] is not None else ip  # part 0: the call's text
            mine = [*(c for c, acts in zip(controls, acting, strict=True) if acts is None or part in acts), *sparse]
            half = guiding and cfg <= 1.0  # unguided in a guided call: the half of the batches it predicts
            if half:  # its images, its controls' residuals
                own, mine = own.half(negative), guidance_halves(mine, negative)
            sizes = sdxl_conditions(text, height, width)  # SDXL: pooled text and size ids, for ControlNets too
            bound = [*(with_sdxl(c, sizes) for c in mine), *own.conditions]
            predict = unet_predictor(self.unet, [*conditions, *sizes, *bound])
            predict = own.around(predict)  # its processors in the UNet around each prediction
            if ref is not None:  # reference-only: first a pass over the noised picture, without the controls
                predict = ref.around(predict, own.around(unet_predictor(self.unet, [*sizes, *own.conditions])))
            predict = motion_scaled(self.unet, predict, scale)  # None: the predictor itself
            predict = attention_scaled(self.unet, predict, keys, attention)  # at 1 without a map: itself
            if region_loras:  # each set, per window, to its scale if it acts in this part, else off
                predict = lora_in_part(predict, regional_loras, region_loras, lora_acting, part, num_frames)
            if free_noise is not None:
                predict = free_noise_predictor(predict, self.unet, free_noise)
            if context_length is not None:
                predict = windowed(predict, num_frames, context, timesteps=timesteps)
            predict = seeing_clip(predict, [*conditions, *bound])  # keyframe ControlNets see the whole clip
            perturbed, pag_scale = pag_guidance(pag, pag_layers, predict, text.uncond if steered and not half else None)
            return guided(predict, text.uncond, text.cond, cfg, guidance_rescale, perturbed, pag_scale)

        scales = motion_scale_runs(motion_scale, motion_scale_steps, steps)  # one run unless keyframed by step
        key_runs = motion_scale_runs(attention_scale, attention_steps, steps)  # the attention scale's, likewise
        weights = region_weights(regions, num_frames, height, width, latents.shape[-2:])  # None without regions
        if composed:  # the AND parts and the unconditional prediction, by their weights
            region_texts = [*composed[1:], unconditional(composed[0])]
            weights = and_weights([w for _, w in parts], num_frames, tuple(latents.shape[-2:]))
        weights = None if weights is None else weights.to(latents.device, latents.dtype)  # once, not every step
        confined = not splits or any(a is not None for a in acting)  # ControlNets confined to regions, or unsplit
        shared = shares_unconditional(guidance_rescale, confined, ref, region_loras, pag, conditions,
                                      not same_negative_images(ips))  # fmt: skip

        def regions_for(text: TextConditioning, scale: MotionScale | None, keys: float, cfg: float) -> Denoiser:
            background = composed[0] if composed else None if keep_background else text
            made = partial(denoiser_for, scale=scale, keys=keys)
            plain = partial(made, cfg=1.0) if shared and cfg > 1.0 else None  # one ε_u for all the parts
            return regional(partial(made, cfg=cfg), background, region_texts, weights, plain, cfg)

        drawn = [(first, regions_for(*run)) for first, run in merged_runs(encoded, scales, key_runs, cfg_runs)]
        denoiser = ramped_loras(switched_at_steps(drawn, timesteps), ramped, lora_ramps, timesteps)

        # 4. Loop (with a video kept in part, put back after every step).
        kept = kept_weight(regions, keep_background, weights)
        blend = kept_video(video_mask, clean, noise, self.scheduler, timesteps, (height, width), kept) if clip else None
        with (
            lora_scales_kept(ramped or regional_loras, [*lora_ramps, *region_loras]),  # LoRA scales put back after
            free_u_on(self.unet, free_u),  # FreeU off again after
        ):
            if gradual_latent is not None:  # on latents growing to the clip's size
                noise = start_noise(latents, noise if clip else None, self.scheduler.init_noise_sigma)
                latents = gradual_denoise(gradual_latent, denoiser, self.scheduler, latents, timesteps, noise,
                                          self.size_multiple // f, generator, progress, callback, blend)  # fmt: skip
            elif free_init is None:
                latents = denoise(denoiser, self.scheduler, latents, timesteps, generator, progress, callback, blend)
            else:  # FreeInit: the loop rerun from re-initialised noise
                latents = free_init_denoise(
                    free_init, denoiser, self.scheduler, latents, num_inference_steps, generator, progress, callback
                )

        # 5. Decode frame chunks; under model offload, every model back to CPU memory after.
        if output_type == "latent":
            self.offload_models()
            return latents
        frames = self.decode(latents, decode_chunk_size)
        self.offload_models()
        return frames

"""`animatediff generate`: text → animation with any base, motion module, personalized model and LoRAs."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from animatediff.cli.context_options import (
    add_context_args,
    context_from_args,
    motion_attention_from_args,
    motion_scale_from_args,
    motion_scale_steps_from_args,
)
from animatediff.cli.controlnet_options import (
    add_controlnet_args,
    add_keyframe_controlnet_args,
    controlnet_inputs_from_args,
    controlnets_for,
    keyframe_items_from_args,
)
from animatediff.cli.free_init_options import add_free_init_args, free_init_from_args
from animatediff.cli.free_noise_options import add_free_noise_args, free_noise_option
from animatediff.cli.hires_options import (
    add_gradual_latent_args,
    add_hires_args,
    gradual_latent_from_args,
    hires_from_args,
)
from animatediff.cli.ip_adapter_options import add_ip_adapter_args, ip_adapter_from_args
from animatediff.cli.memory_options import add_memory_args, memory_from_args
from animatediff.cli.options import HelpFormatter, device_options, quiet_option, resolve_device, silence_libraries
from animatediff.cli.pag_options import add_pag_args, pag_from_args
from animatediff.cli.reference_options import add_reference_args, reference_from_args
from animatediff.cli.region_options import add_region_args, region_lora_specs, regions_from_args
from animatediff.cli.sampling_options import add_sampling_args, guidance_and_free_u_from_args, sampling_from_args
from animatediff.cli.sparse_ctrl_options import add_sparse_ctrl_args, sparse_ctrl_input_from_args, sparse_ctrls_for
from animatediff.cli.text_options import add_text_args, check_text_args
from animatediff.cli.video_options import add_image_start_args, add_video_args, video_from_args, video_mask_from_args
from animatediff.errors import InputError


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="text → animation (GIF, MP4, WebP, .npy or a folder of PNGs)",
        description="Animate a prompt with a Stable Diffusion 1.x or SDXL base and a motion module of its family; "
        "with neither named, the embedded world model.",
        epilog="The embedded world model draws 32×32 and knows 27 words: shapes circle, square, triangle, cross "
        "(star with its DreamBooth); colours red, green, blue, yellow, purple; backgrounds black, white, gray, blue; "
        "textures striped, outlined; motions moving left/right/up/down, bouncing, growing, shrinking, rotating; and "
        "a, on, background. E.g. 'a red circle moving right on a blue background'. Other words and sizes get a "
        "warning.",
        formatter_class=HelpFormatter,
        parents=[device_options(), quiet_option()],
    )
    p.add_argument(
        "--base", default=None, help="SD1.x or SDXL diffusers folder or hub id; default: the embedded world model"
    )
    p.add_argument(
        "--motion-module",
        default=None,
        help="motion module: official .ckpt/.safetensors, diffusers MotionAdapter folder, or hub id; default: the "
        "embedded world model's",
    )
    p.add_argument(
        "--prompt", default=None, help="what to animate; with --prompt-map, text put before every keyframe's prompt"
    )
    p.add_argument(
        "--prompt-map",
        default=None,
        metavar="FILE",
        help="prompt travel: a YAML or JSON mapping frame → prompt (frames from 0); the text embeddings are "
        "interpolated between these keyframes",
    )
    p.add_argument(
        "--prompt-interpolation",
        choices=["linear", "slerp", "none"],
        default="linear",
        help="how frames between --prompt-map keyframes get their text: linear, spherical, or the latest keyframe's",
    )
    p.add_argument(
        "--prompt-travel-loop",
        action="store_true",
        help="keyframes go round: frames after the last travel on towards the first (animatediff-cli-prompt-travel's)",
    )
    p.add_argument(
        "--negative-prompt",
        default=None,
        help="what to steer away from; unset, an SDXL base whose model_index.json says force_zeros_for_empty_prompt "
        "takes zeros as the unconditional text (as diffusers does), an SD1.x base the empty prompt",
    )
    p.add_argument(
        "--clip-skip",
        type=int,
        default=1,
        metavar="N",
        help="take the text from the text encoder's N-th layer from the end, as the UIs count it: 1 the layer the "
        "model was trained on, 2 the one before (many anime models want 2); diffusers' clip_skip is N-1",
    )
    add_text_args(p)
    p.add_argument("--frames", type=int, default=16, help="number of frames")
    p.add_argument("--width", type=int, default=None, help="pixels; default: the base model's native size")
    p.add_argument("--height", type=int, default=None, help="pixels; default: the base model's native size")
    p.add_argument(
        "--guidance-rescale",
        type=float,
        default=0.0,
        help="0-1: rescale the guided prediction toward the conditional one's spread (zero-SNR bases; 0.7 is usual)",
    )
    add_sampling_args(p)
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument(
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="draw N clips with the models loaded once, seeds SEED, SEED+1, … (A1111's batch count); each written "
        "as --output's name with -SEED before its extension",
    )
    p.add_argument(
        "--prediction-type",
        choices=["auto", "epsilon", "v_prediction"],
        default="auto",
        help="what the base's UNet predicts; auto: its scheduler config (epsilon if it has none)",
    )
    p.add_argument(
        "--zero-snr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the base was trained on a zero-terminal-SNR schedule (sample with trailing timesteps); "
        "default: its scheduler config",
    )
    p.add_argument("--fps", type=float, default=8.0, help="frames per second of the written video")
    p.add_argument(
        "--output",
        default="animation.gif",
        help="file by extension (.gif, .mp4, .webp, .npy) or a folder for numbered PNGs (replacing an earlier "
        "folder of them)",
    )
    p.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="denoise in sliding windows of this many frames (for more frames than the module holds)",
    )
    p.add_argument("--context-overlap", type=int, default=4, help="frames shared by neighbouring windows")
    p.add_argument(
        "--context-stride",
        type=int,
        default=None,
        help="window stride: sliding windows (--context-schedule uniform) at strides 1, 2, …, 2^(S-1) (1 unless "
        "given); with --free-noise, frames between window starts (4 unless given)",
    )
    add_context_args(p)
    add_free_noise_args(p)
    add_free_init_args(p)
    add_pag_args(p)
    add_reference_args(p)
    add_ip_adapter_args(p)
    add_video_args(p)
    add_image_start_args(p)
    add_hires_args(p)
    add_gradual_latent_args(p)
    add_region_args(p)
    add_controlnet_args(p)
    add_keyframe_controlnet_args(p)
    add_sparse_ctrl_args(p)
    add_personalization_args(p)
    add_memory_args(p)
    p.set_defaults(run=run_generate)


def add_personalization_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dreambooth",
        default=None,
        help="single-file checkpoint of --base's family (SD1.x or SDXL; .safetensors/.ckpt, LDM/SGM layout) "
        "replacing --base's weights",
    )
    p.add_argument(
        "--vae",
        default=None,
        metavar="PATH",
        help="VAE replacing --base's and --dreambooth's: a diffusers VAE or pipeline folder, a hub id, or a single "
        "file (.safetensors/.ckpt) in the LDM or diffusers layout; the base's scaling factor stays",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="image LoRA (kohya or diffusers/PEFT), scale 1.0 unless given; repeatable",
    )
    p.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="PATH",
        help="textual-inversion embedding (A1111's .pt/.safetensors, diffusers' learned_embeds, SDXL's clip_l + "
        "clip_g), written in the prompts by its file name, e.g. EasyNegative; repeatable",
    )
    p.add_argument(
        "--motion-lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="MotionLoRA (official or diffusers layout), scale 1.0 unless given; repeatable. With the embedded world "
        "model, a motion's name picks its shipped MotionLoRA: left, right, up, down, growing, shrinking",
    )
    p.add_argument(
        "--lora-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="where a prompt's <lora:NAME:WEIGHT> tags (A1111's) find NAME.safetensors (or .ckpt/.pt): an image "
        "LoRA or a MotionLoRA, merged at WEIGHT, the tag taken out of the prompt; repeatable",
    )
    p.add_argument(
        "--adapter-lora",
        default=None,
        metavar="PATH[:SCALE]",
        help="v3 domain adapter LoRA on the spatial attention, scale 1.0 unless given",
    )


def lora_specs(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    """(kind, path, scale) of the LoRAs on the command line, in the official merge order: image, adapter, motion.
    A MotionLoRA given by a motion's name is the embedded world's."""
    from animatediff.formats.lora import parse_scaled_path

    specs = [("image", s) for s in args.lora] + [("adapter", args.adapter_lora)] * bool(args.adapter_lora)
    specs += [("motion", s) for s in args.motion_lora]
    parsed = [(kind, *parse_scaled_path(spec)) for kind, spec in specs]
    return [(kind, _motion_lora(path) if kind == "motion" else path, scale) for kind, path, scale in parsed]


def _motion_lora(path: str) -> str:
    if Path(path).exists() or not path.isidentifier():
        return path
    from animatediff.world.cli import embedded_motion_lora

    return embedded_motion_lora(path)


def _models(args: argparse.Namespace) -> tuple[str, str]:
    """--base and --motion-module, with the embedded world model where neither is given. Where only one is given,
    a missing file is said first: it is the likelier mistake."""
    if args.base is None and args.motion_module is None:
        from animatediff.world.cli import embedded_base_and_module

        return embedded_base_and_module()
    from animatediff.hub import check_reference

    if args.base is None:
        check_reference(args.motion_module, "motion module")
        raise InputError("--motion-module needs --base: the base model it animates (or name neither)")
    if args.motion_module is None:
        check_reference(args.base, "base model")
        raise InputError("--base needs --motion-module: the motion module that animates it (or name neither)")
    return args.base, args.motion_module


def _check_models(base: str, motion_module: str, args: argparse.Namespace, loras: list) -> None:
    """Every model named is a local path or can be a hub reference: a missing local file fails before any loads."""
    from animatediff.hub import check_reference

    check_reference(base, "base model")
    check_reference(motion_module, "motion module")
    if args.dreambooth:
        check_reference(args.dreambooth, "personalized model")
    if args.vae:
        check_reference(args.vae, "VAE")
    kinds = {"image": "LoRA", "adapter": "adapter LoRA", "motion": "MotionLoRA", "auto": "LoRA"}
    for kind, path, _ in loras:
        check_reference(path, kinds[kind])


def run_generate(args: argparse.Namespace) -> None:
    if args.quiet:
        silence_libraries()

    from animatediff.formats.embeddings import check_embedding_file
    from animatediff.io.video import check_finite, check_video_path, save_video, seeded_path
    from animatediff.pipeline import AnimationPipeline
    from animatediff.pipeline.gradual_latent import refuse_spatial
    from animatediff.pipeline.hires import draw
    from animatediff.pipeline.keyframe_control_inputs import load_keyframe_controlnets
    from animatediff.pipeline.prompt_travel import prompt_argument
    from animatediff.pipeline.reference import check_reference
    from animatediff.pipeline.region_loras import RegionLora
    from animatediff.prompt_loras import prompt_without_lora_tags, tagged_loras
    from animatediff.text_encoding import check_clip_skip

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    seeds = [seed + i for i in range(args.count)]  # A1111's batch count: the next seeds
    outputs = [Path(args.output)] if args.count == 1 else [seeded_path(args.output, s) for s in seeds]
    for output in outputs:
        check_video_path(output, "--output")  # before minutes of loading and sampling
    sampling = sampling_from_args(args)  # preset, scheduler, steps, guidance, spacing: checked before loading
    guidance_and_free_u = guidance_and_free_u_from_args(args)  # checked before loading
    args.steps = sampling.steps
    prompt = prompt_argument(args.prompt, args.prompt_map, args.frames)  # a bad --prompt-map fails before loading
    free_noise = free_noise_option(args)  # bad FreeNoise options fail before loading
    context = context_from_args(args)  # bad window options fail before loading; None under FreeNoise
    motion_scale = motion_scale_from_args(args)
    motion_scale_steps = motion_scale_steps_from_args(args)
    motion_attention = motion_attention_from_args(args)  # scale and mask, checked before loading
    check_clip_skip(args.clip_skip)  # its upper bound is the text encoder's, said when the text is encoded
    device, dtype = resolve_device(args)
    memory = memory_from_args(args, device)  # VAE slicing/tiling, offload, FFN chunks, compile: checked before loading
    scheduler = sampling.make_scheduler()
    start = time.perf_counter()
    free_init = free_init_from_args(args)  # bad FreeInit options fail before loading
    pag = pag_from_args(args)  # bad PAG options fail before loading
    reference = reference_from_args(args)  # the picture read before loading
    check_reference(reference, pag)
    ip_adapter = ip_adapter_from_args(args)  # IP-Adapter files and images checked before loading
    if args.prompt_travel_loop and isinstance(prompt, str) and not any(a.keyframes for a in ip_adapter):
        raise InputError("--prompt-travel-loop needs keyframes: --prompt-map, keyframe lines in --prompt, FRAME:IMAGE")
    video, strength = video_from_args(args, free_init)  # the input video is read (and checked) before loading
    video_mask = video_mask_from_args(args, free_init)
    hires = hires_from_args(args)  # bad hires fix options fail before loading
    regions = regions_from_args(args)  # masks found and read before loading
    region_loras = region_lora_specs(args)  # LoRAs acting in some regions: (regions, path, scale)
    gradual = gradual_latent_from_args(args)
    check_text_args(args, prompt)
    control_inputs = controlnet_inputs_from_args(args)  # ControlNets named, control videos read: before loading
    keyframe_items = keyframe_items_from_args(args)
    sparse_input = sparse_ctrl_input_from_args(args)  # SparseCtrl named, keyframe images read: before loading
    refuse_spatial(gradual, {"FreeInit": free_init})
    loras = lora_specs(args)  # a bad scale fails before minutes of loading
    loras += tagged_loras([prompt], args.lora_dir)  # the prompt's <lora:NAME:WEIGHT> tags, found before loading
    prompt = prompt_without_lora_tags(prompt)
    for path in args.embedding:  # a missing or unreadable embedding fails before loading
        check_embedding_file(path)
    base, motion_module = _models(args)
    _check_models(base, motion_module, args, [*loras, *(("image", path, scale) for _, path, scale in region_loras)])
    pipe = AnimationPipeline.from_pretrained(
        base,
        motion_module,
        scheduler,
        memory.load_device(device),  # CPU memory under offload
        dtype,
        dreambooth=args.dreambooth,
        prediction_type=None if args.prediction_type == "auto" else args.prediction_type,
        zero_snr=args.zero_snr,
        vae=args.vae,
    )
    for kind, path, scale in loras:
        pipe.add_lora(path, scale, kind=kind)
    acting = [  # keyframed: merged at 1, its text-encoder part reading the prompts at 1, as an entry's default alpha
        RegionLora(pipe.add_lora(path, 1.0 if isinstance(scale, dict) else scale), regions, scale)
        for regions, path, scale in region_loras
    ]
    for path in args.embedding:
        pipe.load_embedding(path)
    pipe.apply_memory_options(memory, device)  # after the LoRAs: sequential offload takes the merged weights
    controlnets = controlnets_for(control_inputs, pipe, args)
    controlnets += load_keyframe_controlnets(keyframe_items, pipe, args.frames, args.height, args.width)
    sparse_ctrls = sparse_ctrls_for(sparse_input, pipe, args)
    call = dict(
        num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
        guidance_scale=sampling.guidance_scale,  # None: the base's own
        **guidance_and_free_u,
        guidance_rescale=args.guidance_rescale,
        progress=not args.quiet,
        context=context,
        motion_scale=motion_scale,
        motion_scale_steps=motion_scale_steps,
        **motion_attention,
        free_noise=free_noise,
        prompt_interpolation=args.prompt_interpolation,
        prompt_travel_loop=args.prompt_travel_loop,
        free_init=free_init,
        pag=pag, reference=reference,
        controlnets=controlnets,
        sparse_ctrls=sparse_ctrls,
        ip_adapter=ip_adapter,
        video=video, strength=strength, video_mask=video_mask, regions=regions, region_loras=acting,
        clip_skip=args.clip_skip,
        prompt_weighting=args.prompt_weighting,
        long_prompts=args.long_prompts,
        prompt_editing=args.prompt_editing, prompt_and=args.prompt_and,
        prompt_2=args.prompt_2, negative_prompt_2=args.negative_prompt_2, gradual_latent=gradual,
    )  # fmt: skip
    for seed, output in zip(seeds, outputs, strict=True):
        frames = draw(pipe, prompt, args.negative_prompt, seed, hires, **call)[0]
        check_finite(frames, output)
        path = save_video(frames, output, args.fps)
        if not args.quiet:
            print(f"wrote {path} ({len(frames)} frames, seed {seed}, {time.perf_counter() - start:.1f} s)")

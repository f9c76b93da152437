"""`generate`'s sampling options: --scheduler, --steps, --guidance-scale, --timestep-spacing, --tcd-gamma and the
few-step --preset that sets several of them (`sampling.presets`), resolved into one `Sampling` before loading; the
guidance's keyframes by step (--guidance-scale-steps) and FreeU (--freeu)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.sampling.presets import Sampling

# sampling.schedulers' names and spacings, and sampling.presets' table, here so that building the parser imports
# no torch (tests/test_few_step.py checks they agree).
SCHEDULER_NAMES = (
    "ddim, euler, euler-ancestral, euler-karras, heun, dpm2, dpm2-karras, dpm2-ancestral, dpm2-ancestral-karras, "
    "dpm++-2m, dpm++-2m-karras, dpm++-2m-sde, dpm++-2m-sde-karras, dpm++-sde, dpm++-sde-karras, unipc, deis, pndm, "
    "ddpm, lcm, tcd"
)
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PRESETS_HELP = (
    "lightning-1step, lightning-2step, lightning-4step, lightning-8step: euler, trailing spacing, 1, 2, 4 or 8 steps, "
    "guidance 1 (AnimateDiff-Lightning: --motion-module animatediff_lightning_4step_diffusers.safetensors for 4 "
    "steps); animatelcm: lcm, 6 steps, guidance "
    "2 (AnimateLCM: its motion module and --lora AnimateLCM_sd15_t2v_lora.safetensors:0.8); tcd-4step: tcd, "
    "gamma 0.3, 4 steps, guidance 1 (TCD- or LCM-distilled weights)"
)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """The options that choose how sampling runs; each one given explicitly takes over what --preset sets."""
    p.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help=f"few-step sampling as a distilled model's card prescribes; explicit options below take over. "
        f"{PRESETS_HELP}",
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps; default: the preset's, else 25")
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance scale; default: the preset's, else the base's own (its animatediff.json; 3 "
        "for the world models), else 7.5",
    )
    p.add_argument(
        "--guidance-scale-steps",
        nargs="+",
        action="extend",
        default=None,
        metavar="FRACTION:S",
        help="the guidance scale from a fraction of the steps on, --guidance-scale before the first: 0.6:1 drops the "
        "unconditional prediction for the last 40%% of the steps (ComfyUI-AnimateDiff-Evolved's custom CFG keyframes)",
    )
    p.add_argument(
        "--freeu",
        default=None,
        metavar="b1=B1,b2=B2,s1=S1,s2=S2[,form=FORM]",
        help="FreeU in the UNet's up blocks: backbone × b1, b2 and skip low frequencies × s1, s2; e.g. "
        "b1=1.5,b2=1.6,s1=0.9,s2=0.2 (diffusers' SD1.5 values); a last form=diffusers (the default: diffusers' "
        "enable_freeu, the first two up blocks), comfy (ComfyUI's FreeU node: the joins whose backbone is 4 or 2 × "
        "the first block's width) or comfy-v2 (ComfyUI's FreeU_V2: those joins, the backbone scaled by its "
        "normalised mean)",
    )
    p.add_argument(
        "--scheduler", default=None, help=f"{SCHEDULER_NAMES}; default: the preset's, else ddim (the official one)"
    )
    p.add_argument(
        "--timestep-spacing",
        default=None,
        metavar="{" + ",".join(TIMESTEP_SPACINGS) + "}",
        help="how the steps spread over the training timesteps (trailing: from the last one, as few-step models are "
        "sampled); default: the preset's, else the scheduler's own (leading); not for lcm or tcd",
    )
    p.add_argument(
        "--tcd-gamma",
        type=float,
        default=None,
        metavar="G",
        help="the tcd scheduler's stochasticity in [0, 1] (0: deterministic); default: 0.3",
    )
    p.add_argument(
        "--ddim-eta",
        type=float,
        default=None,
        metavar="E",
        help="the ddim scheduler's eta in [0, 1], fresh noise at each step (A1111's Eta for DDIM); default: 0, "
        "deterministic, as the official code samples",
    )


def guidance_and_free_u_from_args(args: argparse.Namespace) -> dict[str, object]:
    """--guidance-scale-steps ({fraction of the steps: scale}) and --freeu (a `FreeU`) as the pipeline's keywords,
    None where not given, checked before loading."""
    from animatediff.pipeline.free_u import parse_free_u
    from animatediff.pipeline.guidance_steps import check_guidance_scale_steps
    from animatediff.pipeline.motion_scale import parse_step_keyframes

    flag, steps = "--guidance-scale-steps", args.guidance_scale_steps
    keyframes = None if steps is None else check_guidance_scale_steps(parse_step_keyframes(steps, flag), flag)
    free_u = None if args.freeu is None else parse_free_u(args.freeu, "--freeu")
    return {"guidance_scale_steps": keyframes, "free_u": free_u}


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    """The `Sampling` the options ask for; an unknown preset, scheduler or spacing, or an option that does not fit
    the scheduler, is an input error before anything loads."""
    from animatediff.sampling.presets import resolve_sampling

    return resolve_sampling(
        args.preset,
        args.scheduler,
        args.steps,
        args.guidance_scale,
        args.timestep_spacing,
        args.tcd_gamma,
        args.ddim_eta,
    )

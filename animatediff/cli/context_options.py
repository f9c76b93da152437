"""`generate`'s context-window options beyond --context-length/--context-overlap/--context-stride (schedule, fuse,
closed loop, --loop) and --motion-scale, and the `ContextSchedule` and scale they make, checked before any model
loads (a context length above the motion module's position encoding is the pipeline's check, once it is loaded)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from animatediff.sampling.context import ContextSchedule

# sampling.context's SCHEDULES and FUSE_METHODS, here so that building the parser imports no torch.
SCHEDULES = ("static", "uniform", "looped")
FUSE_METHODS = ("flat", "pyramid", "overlap-linear", "relative")
LOOP_LENGTH = 16  # sampling.context's, for the help text


def add_context_args(p: argparse.ArgumentParser) -> None:
    """Sliding-window options as ComfyUI-AnimateDiff-Evolved names them, --loop, and --motion-scale."""
    p.add_argument(
        "--context-schedule",
        default=None,
        metavar="{" + ",".join(SCHEDULES) + "}",
        help="where the sliding windows lie: static (fixed starts, the last snapped to the end; the default), "
        "uniform (at strides 1, 2, 4, … up to --context-stride levels, shifted every step), looped (static starts "
        "wrapping around the clip's end)",
    )
    p.add_argument(
        "--context-fuse",
        default=None,
        metavar="{" + ",".join(FUSE_METHODS) + "}",
        help="how the windows' predictions are weighed per frame: flat, pyramid (the default), overlap-linear "
        "(ramps across the overlaps), relative (a tent over the window)",
    )
    p.add_argument(
        "--closed-loop",
        action="store_true",
        help="uniform windows also wrap around the clip's end, so its last frame flows into its first",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="a seamless loop: looped windows (or --context-schedule uniform, closed), of --context-length frames, "
        f"or {LOOP_LENGTH} (half the clip, with at most half a window of overlap, for {LOOP_LENGTH} frames or "
        "fewer); GIF and WebP play forever",
    )
    p.add_argument(
        "--motion-scale",
        type=float,
        default=None,
        metavar="S",
        help="how much of what the motion modules add is kept: 0 frames drawn independently, 1 as trained (the "
        "default), below damps and above exaggerates the motion",
    )
    p.add_argument(
        "--motion-scale-steps",
        nargs="+",
        action="extend",
        default=None,
        metavar="FRACTION:S",
        help="the motion scale from a fraction of the steps on, --motion-scale before the first: 0.5:0 keeps the "
        "motion modules for the first half of the steps only (ComfyUI-AnimateDiff-Evolved's scale keyframes)",
    )
    p.add_argument(
        "--motion-attention-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="the motion modules' attention keys multiplied by S (ComfyUI-AnimateDiff-Evolved's motion scale, "
        "its scale multival): above 1 sharper attention between frames, below 1 more even; 1 as trained",
    )
    p.add_argument(
        "--motion-attention-scale-steps",
        nargs="+",
        action="extend",
        default=None,
        metavar="FRACTION:S",
        help="the motion attention scale from a fraction of the steps on, --motion-attention-scale before the first "
        "(Evolved's scale keyframes)",
    )
    p.add_argument(
        "--motion-attention-mask",
        default=None,
        metavar="MASK",
        help="a mask image (or a folder of masks named by frame, each held until the next) whose grey level "
        "multiplies --motion-attention-scale per pixel: white S, black 0 (Evolved's mask multival)",
    )


def context_from_args(args: argparse.Namespace) -> ContextSchedule | None:
    """The sliding windows the options ask for (`sampling.context.requested_windows`); None without --context-length
    or --loop, and under --free-noise, whose windows take over (then asking for a schedule, fuse or loop is an
    error)."""
    from animatediff.sampling.context import requested_windows

    return requested_windows(
        args.frames,
        args.context_length,
        args.context_overlap,
        args.context_stride,
        args.context_schedule,
        args.context_fuse,
        args.closed_loop,
        args.loop,
        getattr(args, "free_noise", False),
        name=lambda key: "--" + key.replace("_", "-"),
    )


def motion_scale_steps_from_args(args: argparse.Namespace) -> dict[float, float] | None:
    """--motion-scale-steps as {fraction of the steps: scale}, checked; None when not given."""
    if args.motion_scale_steps is None:
        return None
    from animatediff.pipeline.motion_scale import parse_motion_scale_steps

    return parse_motion_scale_steps(args.motion_scale_steps, "--motion-scale-steps")


def motion_scale_from_args(args: argparse.Namespace) -> float | None:
    """--motion-scale, checked (a number ≥ 0); None when not given."""
    if args.motion_scale is None:
        return None
    from animatediff.models.motion_scale import motion_scales

    motion_scales(args.motion_scale)
    return args.motion_scale


def motion_attention_from_args(args: argparse.Namespace) -> dict[str, object]:
    """--motion-attention-scale, its -steps and --motion-attention-mask as the pipeline's keywords, checked before
    loading."""
    from pathlib import Path

    from animatediff.errors import InputNotFound
    from animatediff.pipeline.attention_scale import check_motion_attention
    from animatediff.pipeline.motion_scale import parse_step_keyframes

    mask = args.motion_attention_mask
    if mask is not None and not Path(mask).expanduser().exists():
        raise InputNotFound(f"--motion-attention-mask: not found: {mask}")
    steps = args.motion_attention_scale_steps
    keyframes = None if steps is None else parse_step_keyframes(steps, "--motion-attention-scale-steps")
    scale, keyframes = check_motion_attention(args.motion_attention_scale, keyframes)
    return {"motion_attention_scale": scale, "motion_attention_mask": mask, "motion_attention_scale_steps": keyframes}

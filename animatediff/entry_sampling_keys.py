"""A prompt-config entry's sampling keys, named after `generate`'s flags: `scheduler` (--scheduler), `preset` (--preset:
a few-step recipe, `sampling.presets`, setting the scheduler and, unless the entry gives them, `steps` and
`guidance_scale`), `timestep_spacing` (--timestep-spacing), `tcd_gamma` (--tcd-gamma), `ddim_eta` (--ddim-eta),
`context_length` and `context_overlap` (--context-length, --context-overlap: static sliding windows, pyramid-fused),
`context_stride`, `context_schedule`, `context_fuse` and `closed_loop` (--context-stride, --context-schedule,
--context-fuse, --closed-loop), `loop` (--loop: looped windows), `free_noise` (--free-noise: FreeNoise's windows of
`context_length` frames instead), `motion_scale` (--motion-scale), `motion_scale_steps` (--motion-scale-steps, {fraction
of the steps: scale}), `motion_attention_scale` and `motion_attention_scale_steps`, `guidance_scale_steps`
(--guidance-scale-steps), `freeu` (--freeu: {b1, b2, s1, s2}) and `free_init_iters` (--free-init, FreeInit's default
settings otherwise).

`check_sampling_keys` checks them in place while the entry is parsed, before any model loads, with the checks of
the objects they make (`resolve_sampling`, `requested_windows`, `FreeInit`); `entry_scheduler`, `entry_context`
and `entry_free_init` make those objects for the run.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from animatediff.errors import InputError
from animatediff.pipeline.video_start import check_video_options
from animatediff.sampling.context import requested_windows
from animatediff.sampling.free_init import FreeInit
from animatediff.sampling.presets import Sampling, resolve_sampling
from animatediff.sampling.schedulers import make_scheduler, set_ddim_eta

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    from animatediff.pipeline.free_noise import FreeNoise
    from animatediff.prompt_entries import PromptEntry
    from animatediff.sampling.context import ContextSchedule

DEFAULT_OVERLAP = 4
"""`context_overlap` unless given, as generate's --context-overlap."""
WINDOW_KEYS = ("context_stride", "context_schedule", "context_fuse")
"""The window keys beyond context_length and context_overlap that an unset (null) value leaves at their default."""


def check_sampling_keys(values: dict, where: str) -> None:
    """Check an entry's scheduler, context and FreeInit keys in place (`where` names the entry in errors); an unset
    key (absent or null) takes its default."""
    keys = ("scheduler", "preset", "timestep_spacing", "tcd_gamma", "ddim_eta", "context_length", "context_overlap")
    for key in (*keys, *WINDOW_KEYS, "free_init_iters", "motion_scale"):
        if values.get(key) is None:
            values.pop(key, None)
    for key, what in (
        ("scheduler", "a scheduler's name"),
        ("preset", "a preset's name"),
        ("timestep_spacing", "a name"),
    ):
        if not isinstance(values.get(key, ""), str):
            raise InputError(f"{where}: {key} must be {what}, got {values[key]!r}")
    if values.get("scheduler") and values.get("inference_config"):
        raise InputError(f"{where}: give scheduler or inference_config, not both")
    sampling = _sampling(values, where)
    if values.get("preset"):  # the preset's steps and guidance, unless the entry gives its own
        if values.get("steps") is None:
            values["steps"] = sampling.steps
        if values.get("guidance_scale") is None:
            values["guidance_scale"] = sampling.guidance_scale
    _check_windows(values, where)
    if "motion_scale" in values:
        from animatediff.models.motion_scale import motion_scales

        try:
            motion_scales(values["motion_scale"])
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
    if "motion_attention_scale" in values:
        from animatediff.models.attention_scale import check_attention_scale

        values["motion_attention_scale"] = check_attention_scale(
            values["motion_attention_scale"], f"{where}: motion_attention_scale"
        )
    if values.get("freeu") is not None:
        from animatediff.pipeline.free_u import parse_free_u

        try:
            values["freeu"] = asdict(parse_free_u(values["freeu"], "freeu"))
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
    for key in ("motion_scale_steps", "motion_attention_scale_steps", "guidance_scale_steps"):
        if values.get(key) is not None:
            values[key] = _motion_scale_steps(values[key], where, key)
    if "free_init_iters" in values:
        free_init = _free_init(values["free_init_iters"], where)
        if values.get("video"):  # FreeInit only at strength 1 (`pipeline.video_start`)
            try:
                check_video_options(values["video"], values.get("strength"), free_init=free_init)
            except InputError as err:
                raise InputError(f"{where}: {err}") from None


def _check_windows(values: dict, where: str) -> None:
    """The context-window and FreeNoise keys, checked by the rule the run will use (`requested_windows`)."""
    for key in ("loop", "free_noise", "closed_loop"):
        if not isinstance(values.get(key, False), bool):
            raise InputError(f"{where}: {key} must be true or false, got {values[key]!r}")
    for key in ("context_schedule", "context_fuse"):
        if not isinstance(values.get(key, ""), str):
            raise InputError(f"{where}: {key} must be a name, got {values[key]!r}")
    if values.get("free_noise") and "context_overlap" in values:
        raise InputError(f"{where}: context_overlap is for sliding context windows, which free_noise replaces")
    if "context_overlap" in values and "context_length" not in values and not values.get("loop"):
        raise InputError(f"{where}: context_overlap needs context_length (the window's frames, e.g. 16)")
    overlap = values.get("context_overlap", DEFAULT_OVERLAP)
    bad_overlap = isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0
    if bad_overlap and "context_length" not in values:  # with a length, the windows' own check says more
        raise InputError(f"{where}: context overlap {overlap!r} must be a whole number of frames ≥ 0")
    try:
        if values.get("free_noise"):
            entry_free_noise_of(values.get("context_length"))
        requested_windows(
            values.get("L") or 16,
            values.get("context_length"),
            overlap,
            *(values.get(key) for key in ("context_stride", "context_schedule", "context_fuse")),
            *(values.get(key, False) for key in ("closed_loop", "loop", "free_noise")),
        )
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def _sampling(values: dict, where: str) -> Sampling:
    """The entry's preset, scheduler, timestep spacing, TCD gamma and DDIM eta, resolved (`resolve_sampling`)."""
    try:
        return resolve_sampling(
            values.get("preset") or None,
            values.get("scheduler") or None,
            timestep_spacing=values.get("timestep_spacing") or None,
            tcd_gamma=values.get("tcd_gamma"),
            ddim_eta=values.get("ddim_eta"),
        )
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


def _free_init(iterations: object, where: str) -> FreeInit:
    try:
        return FreeInit(iterations=iterations)
    except InputError as err:
        raise InputError(f"{where}: free_init_iters: {err}") from None


def entry_scheduler(entry: PromptEntry, inference_config: str) -> SchedulerMixin:
    """The entry's `scheduler` by name, or its `preset`'s, with its `timestep_spacing`, `tcd_gamma` and `ddim_eta`;
    without either, the DDIM of its official `inference_config` file (its `noise_scheduler_kwargs`), else the
    official DDIM settings, spaced by `timestep_spacing` and at `ddim_eta` when given."""
    from diffusers import DDIMScheduler

    if entry.scheduler or entry.preset:
        keys = ("preset", "scheduler", "timestep_spacing", "tcd_gamma", "ddim_eta")
        return _sampling({k: getattr(entry, k) for k in keys}, entry.name).make_scheduler()
    spacing = {"timestep_spacing": entry.timestep_spacing} if entry.timestep_spacing else {}
    if not inference_config or not Path(inference_config).is_file():
        scheduler = make_scheduler("ddim", **spacing)  # the official inference configs' DDIM settings
    else:
        kwargs = (yaml.safe_load(Path(inference_config).read_text()) or {}).get("noise_scheduler_kwargs")
        scheduler = DDIMScheduler(**kwargs, **spacing) if kwargs else make_scheduler("ddim", **spacing)
    return scheduler if entry.ddim_eta is None else set_ddim_eta(scheduler, entry.ddim_eta)


def entry_context(entry: PromptEntry, num_frames: int) -> ContextSchedule | None:
    """The entry's sliding context windows over a clip of `num_frames`, as generate's context flags make them
    (`requested_windows`); None without context_length or loop, and under free_noise."""
    return requested_windows(
        num_frames,
        entry.context_length,
        entry.context_overlap,
        entry.context_stride,
        entry.context_schedule,
        entry.context_fuse,
        entry.closed_loop,
        entry.loop,
        entry.free_noise,
    )


def entry_free_noise_of(context_length: int | None) -> FreeNoise:
    """FreeNoise as generate's --free-noise makes it: windows of `context_length` frames, FreeNoise's defaults
    otherwise (16 frames, 4 apart)."""
    from animatediff.pipeline.free_noise import FreeNoise

    return FreeNoise() if context_length is None else FreeNoise(context_length)


def entry_free_noise(entry: PromptEntry) -> FreeNoise | None:
    """The entry's FreeNoise (`free_noise`), else None."""
    return entry_free_noise_of(entry.context_length) if entry.free_noise else None


def entry_free_init(entry: PromptEntry) -> FreeInit | None:
    """FreeInit with its default settings, `free_init_iters` runs in all (generate's --free-init); None without."""
    return None if entry.free_init_iters is None else FreeInit(iterations=entry.free_init_iters)


def _motion_scale_steps(raw: object, where: str, key: str = "motion_scale_steps") -> dict[float, object]:
    """{fraction of the steps: motion scale}, the fractions numbers or their strings (as JSON writes keys); for
    `motion_attention_scale_steps` and `guidance_scale_steps` each scale one number."""
    from animatediff.pipeline.attention_scale import check_attention_scale_steps
    from animatediff.pipeline.guidance_steps import check_guidance_scale_steps
    from animatediff.pipeline.motion_scale import check_motion_scale_steps

    try:
        if isinstance(raw, dict):
            raw = {float(k) if isinstance(k, str) and k.strip() else k: v for k, v in raw.items()}
        if key == "motion_attention_scale_steps":
            return check_attention_scale_steps(raw, key)
        if key == "guidance_scale_steps":
            return check_guidance_scale_steps(raw, key)
        return check_motion_scale_steps(raw)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    except ValueError:
        raise InputError(f"{where}: {key}: its keys must be fractions of the steps, got {raw!r}") from None

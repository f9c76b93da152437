"""A prompt-config entry's sampling keys, named after `generate`'s flags: `scheduler` (--scheduler),
`context_length` and `context_overlap` (--context-length, --context-overlap: static sliding windows, pyramid-fused),
and `free_init_iters` (--free-init, FreeInit's default settings otherwise).

`check_sampling_keys` checks them in place while the entry is parsed, before any model loads, with the checks of
the objects they make (`make_scheduler`, `ContextSchedule`, `FreeInit`); `entry_scheduler`, `entry_context` and
`entry_free_init` make those objects for the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from animatediff.errors import InputError
from animatediff.pipeline.video_start import check_video_options
from animatediff.sampling.context import ContextSchedule
from animatediff.sampling.free_init import FreeInit
from animatediff.sampling.schedulers import make_scheduler

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    from animatediff.prompt_entries import PromptEntry

DEFAULT_OVERLAP = 4
"""`context_overlap` unless given, as generate's --context-overlap."""


def check_sampling_keys(values: dict, where: str) -> None:
    """Check an entry's scheduler, context and FreeInit keys in place (`where` names the entry in errors); an unset
    key (absent or null) takes its default."""
    for key in ("scheduler", "context_length", "context_overlap", "free_init_iters"):
        if values.get(key) is None:
            values.pop(key, None)
    scheduler = values.get("scheduler", "")
    if not isinstance(scheduler, str):
        raise InputError(f"{where}: scheduler must be a scheduler's name, got {scheduler!r}")
    if scheduler:
        if values.get("inference_config"):
            raise InputError(f"{where}: give scheduler or inference_config, not both")
        try:
            make_scheduler(scheduler)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
    if "context_length" in values:
        try:
            ContextSchedule(values["context_length"], values.get("context_overlap", DEFAULT_OVERLAP))
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
    elif "context_overlap" in values:
        raise InputError(f"{where}: context_overlap needs context_length (the window's frames, e.g. 16)")
    if "free_init_iters" in values:
        free_init = _free_init(values["free_init_iters"], where)
        if values.get("video"):  # FreeInit only at strength 1 (`pipeline.video_start`)
            try:
                check_video_options(values["video"], values.get("strength"), free_init=free_init)
            except InputError as err:
                raise InputError(f"{where}: {err}") from None


def _free_init(iterations: object, where: str) -> FreeInit:
    try:
        return FreeInit(iterations=iterations)
    except InputError as err:
        raise InputError(f"{where}: free_init_iters: {err}") from None


def entry_scheduler(scheduler: str, inference_config: str) -> SchedulerMixin:
    """The entry's `scheduler` by name; without one, the DDIM of its official `inference_config` file (its
    `noise_scheduler_kwargs`), else the official DDIM settings."""
    from diffusers import DDIMScheduler

    if scheduler:
        return make_scheduler(scheduler)
    if not inference_config or not Path(inference_config).is_file():
        return make_scheduler("ddim")  # the official inference configs' DDIM settings
    cfg = yaml.safe_load(Path(inference_config).read_text()) or {}
    kwargs = cfg.get("noise_scheduler_kwargs")
    return DDIMScheduler(**kwargs) if kwargs else make_scheduler("ddim")


def entry_context(entry: PromptEntry) -> ContextSchedule | None:
    """The entry's sliding context windows (static, pyramid-fused), as generate's --context-length and
    --context-overlap make them; None without `context_length`."""
    if entry.context_length is None:
        return None
    return ContextSchedule(entry.context_length, entry.context_overlap)


def entry_free_init(entry: PromptEntry) -> FreeInit | None:
    """FreeInit with its default settings, `free_init_iters` runs in all (generate's --free-init); None without."""
    return None if entry.free_init_iters is None else FreeInit(iterations=entry.free_init_iters)

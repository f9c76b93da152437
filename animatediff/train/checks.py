"""What can be wrong with a training config, checked against the base's configs before any weights load; and that
what trains is exactly what was meant to."""

from __future__ import annotations

from torch import nn

from animatediff.base_model import BaseTraits
from animatediff.errors import InputError
from animatediff.train.config import TrainConfig


def check_frames(config: TrainConfig, max_frames: int) -> None:
    """Clips longer than the position encoding cannot train."""
    asked = {"data.num_frames": config.data.num_frames}
    if config.validation.every and config.validation.prompts:
        asked["validation.num_frames"] = config.validation.num_frames
    for name, frames in asked.items():
        if frames > max_frames:
            raise InputError(
                f"{name} is {frames}, but the motion module's position encoding holds at most {max_frames} "
                f"frames; use at most {max_frames}, or a module with a longer encoding (model.scratch.max_frames)"
            )


def check_resolution(config: TrainConfig, traits: BaseTraits) -> None:
    """Training and validation sizes must be multiples of what the base's VAE and UNet divide by."""
    sizes = {"data.resolution": config.data.resolution}
    if config.validation.every and config.validation.prompts:
        sizes["validation.resolution"] = config.validation.resolution
    for name, size in sizes.items():
        if size % traits.size_multiple:
            raise InputError(f"{name} {size} must be a multiple of {traits.size_multiple} for this base model")


def check_frozen(base: dict[str, nn.Module | None], trained: nn.Module, trainable: list[nn.Parameter]) -> None:
    """Raise unless the base's parts (None: a part this base has not) are frozen and exactly the `trainable`
    parameters of the module that trains require gradients (a bug, not an input error)."""
    for name, part in ((n, p) for n, p in base.items() if p is not None):
        thawed = [n for n, p in part.named_parameters() if p.requires_grad]
        if thawed:
            raise RuntimeError(f"base model is not frozen: {name}.{thawed[0]} requires grad ({len(thawed)} in all)")
    intended = {id(p) for p in trainable}
    actual = {id(p) for p in trained.parameters() if p.requires_grad}
    if intended != actual or not intended:
        raise RuntimeError(f"{len(actual)} parameters require grad, {len(intended)} were meant to train")


def check_zero_snr(traits: BaseTraits) -> None:
    """A zero-terminal-SNR schedule leaves no signal at its last timestep, where an ε target is the input itself."""
    if traits.zero_snr and traits.prediction_type != "v_prediction":
        raise InputError(
            "a zero-terminal-SNR schedule leaves no signal at its last timestep, where an epsilon target is the input "
            "itself: it needs a v-prediction base (model.prediction_type v_prediction)"
        )


def check_tracker(report_to: str) -> None:
    """Accelerate drops a tracker whose package is missing without a word; say it instead."""
    if report_to in ("none", "all"):
        return
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    known = [t.value for t in LoggerType if t.value != "all"]
    if report_to not in known:
        raise InputError(f"logging.report_to: {report_to!r} is not one of {', '.join(known)}, 'all' or 'none'")
    if report_to not in [str(t.value) for t in get_available_trackers()]:
        raise InputError(
            f"logging.report_to {report_to!r}: its package is not installed (pip install {report_to}), "
            "or set logging.report_to=none"
        )

"""What a training run tells: its start-up line and the scalars it logs to the trackers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from animatediff.train.trainer import Trainer


def describe(trainer: Trainer) -> str:
    """The start-up line: what trains, how big, on how many processes, and whether it resumes a run (from which
    checkpoint, at which step)."""
    c = trainer.config
    count = sum(p.numel() for p in trainer.trainable)
    where = f"{count:,} parameters on {trainer.accelerator.num_processes} process(es)"
    if trainer.resume_path is None:
        what = trainer.motion_origin
        if c.lora.enabled:
            what = f"MotionLoRA (rank {c.lora.rank}) on the {what}"
        elif c.controlnet.enabled:
            origin = _controlnet_origin(c.controlnet.init, c.controlnet.kind)
            what = f"{_encoder(c.controlnet.kind)} ({origin}) over the frozen {what}"
        elif c.adapter.enabled:
            what = f"a domain adapter (rank {c.adapter.rank}) on the image UNet, one frame per clip"
        return f"training {what}: {where}"
    what = f"the {trainer.motion_config.version} motion module of this run"
    if c.lora.enabled:
        what = f"the MotionLoRA (rank {c.lora.rank}) of this run (on the {trainer.motion_origin})"
    elif c.controlnet.enabled:
        encoder = _encoder(c.controlnet.kind).removeprefix("a ")
        what = f"the {encoder} of this run (over the frozen {trainer.motion_origin})"
    elif c.adapter.enabled:
        what = f"the domain adapter (rank {c.adapter.rank}) of this run"
    line = f"resuming {what} from {trainer.resume_path} at step {trainer.step}: {where}"
    if trainer.step >= c.optim.max_steps:
        line += f"; nothing to train, optim.max_steps is {c.optim.max_steps}"
    return line


def _encoder(kind: str) -> str:
    return {"sparsectrl": "a SparseCtrl encoder", "t2i_adapter": "a T2I-Adapter"}.get(kind, "a ControlNet")


def _controlnet_origin(init: str | None, kind: str = "controlnet") -> str:
    if init is not None:
        return f"from {init}"
    return "freshly initialised" if kind == "t2i_adapter" else "a copy of the base UNet's encoder"


def step_logs(trainer: Trainer, loss: torch.Tensor) -> dict[str, float]:
    """The scalars of a logging step: the loss averaged over processes, the learning rate, the epoch, the skipped
    non-finite steps, and the dataset's skipped clips per reason summed over processes. A collective: every
    process calls it."""
    acc = trainer.accelerator
    logs = {
        "train/loss": acc.reduce(loss.to(acc.device).reshape(1), "mean").item(),
        "train/lr": trainer.lr_scheduler.get_last_lr()[0],
        "train/epoch": trainer.epoch,
        "train/nonfinite_steps": trainer.guard.total,
    }
    for reason, count in skipped_over_processes(acc, trainer.dataset).items():
        logs[f"data/skipped_{reason}"] = count
    return logs


def skipped_over_processes(accelerator, dataset: object) -> dict[str, int]:  # noqa: ANN001 - accelerate.Accelerator
    """`dataset.skipped` ({reason: count}, if it has one) summed over all processes (a collective)."""
    own = {str(k): int(v) for k, v in (getattr(dataset, "skipped", None) or {}).items()}
    if accelerator.num_processes == 1:
        return own
    from accelerate.utils import gather_object

    total: dict[str, int] = {}
    for counts in gather_object([own]):
        for reason, count in counts.items():
            total[reason] = total.get(reason, 0) + count
    return total

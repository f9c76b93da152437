"""The optimizer and learning-rate schedule a run steps: AdamW over the trained parameters, and one of diffusers'
schedules, stepped once per optimizer step."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from animatediff.train.config import OptimConfig


def optimizer_and_schedule(
    parameters: Iterable[torch.nn.Parameter], optim: OptimConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with the config's rate, betas, weight decay and eps, and its `lr_scheduler` with `warmup_steps` over
    `max_steps`."""
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(
        parameters, lr=optim.learning_rate, betas=optim.betas, weight_decay=optim.weight_decay, eps=optim.eps
    )
    schedule = get_scheduler(
        optim.lr_scheduler, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=optim.max_steps
    )
    return optimizer, schedule

"""What the world's image stages share: plain torch training loops' device, data workers, optimizer and log."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class TrainLog:
    """Per-step losses and wall time of one training stage."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def mean(self, last: int = 50) -> float:
        tail = self.losses[-last:]
        return sum(tail) / len(tail) if tail else math.nan


def training_device() -> torch.device:
    """Where the world's image stages train: the GPU when there is one (minutes), else the CPU. Random draws stay
    on CPU generators either way, so a seed means the same data order, noise and timesteps on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rendering_workers() -> int:
    """DataLoader workers that render the world's images and clips. Next to a GPU, several, as rendering on one
    core would leave the GPU waiting. On a CPU, one where a core is left beyond torch's threads, to render the next
    batch while torch trains on this one; else none: on 2 cores, a worker beside torch's 2 threads made a
    motion-stage step 6 % slower in one run and 15 % faster in another. Items are rendered from their index, so
    the data, and the weights, are the same either way."""
    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        return min(8, max(0, cores - 2))
    return 1 if cores > torch.get_num_threads() else 0


def warmup_optimizer(
    params, lr: float, warmup_steps: int, weight_decay: float = 0.0, cosine_steps: int | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warmup, then constant, or with `cosine_steps` a cosine decay to zero over that many."""
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)

    # A linear warmup keeps the first Adam steps (poor second-moment estimates) from kicking tiny nets.
    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / max(1, warmup_steps))
        return warmup if cosine_steps is None else warmup * 0.5 * (1 + math.cos(math.pi * step / cosine_steps))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def endless_batches(dataset: Dataset, batch_size: int, seed: int):
    """Endless shuffled batches, reshuffled each epoch from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            drop_last=True,
            num_workers=rendering_workers(),
        )
        if len(loader) == 0:
            raise ValueError(f"dataset of {len(dataset)} items is smaller than one batch of {batch_size}")
        yield from loader

"""Non-finite losses and gradients: which optimizer steps to skip, and when a run has diverged.

A step is non-finite when the loss of any of its micro-batches, on any process, is NaN or inf, or when its
gradients are (without a grad scaler: under fp16 the scaler skips overflowing steps itself, as part of finding
its scale, so only the loss counts there). All processes reduce one flag, so they agree on every skip. A skipped
step changes nothing: no weight update, no LR-schedule step. `optim.max_nonfinite_steps` of them in a row stop
the run with `TrainingDiverged`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch

from animatediff.errors import InputError

logger = logging.getLogger("animatediff.train")


class TrainingDiverged(InputError):
    """The run kept producing non-finite values (or its weights became non-finite); it stops without writing a
    checkpoint of them. An input error: the config's learning rate, clipping or precision make it so."""


def grads_finite(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """A bool tensor: whether every gradient of `params` is finite (missing gradients count as finite). The largest
    magnitude decides it: unlike a 2-norm, it cannot overflow for finite values, and a NaN anywhere carries."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(True)
    return torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=math.inf, foreach=True))


def weights_finite(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """A bool tensor: whether every value of `params` is finite."""
    params = list(params)
    if not params:
        return torch.tensor(True)
    return torch.stack([torch.isfinite(p.detach()).all() for p in params]).all()


def any_process(accelerator, flag: torch.Tensor) -> bool:  # noqa: ANN001 - accelerate.Accelerator
    """Whether `flag` (a bool tensor) is true on any process; a collective, so every process must call it."""
    value = flag.detach().to(accelerator.device, torch.float32).reshape(1)
    if accelerator.num_processes > 1:
        value = accelerator.reduce(value, "sum")
    return bool(value.item() > 0)


class NonFiniteGuard:
    """Counts non-finite optimizer steps: `observe_loss` per micro-batch, `step_is_nonfinite` once per optimizer
    step (a collective), then `record` with the step's number."""

    def __init__(self, limit: int, scaled: bool) -> None:
        """`limit`: non-finite steps in a row that stop the run; `scaled`: a grad scaler judges the gradients."""
        self.limit, self.scaled = limit, scaled
        self.streak = 0
        self.total = 0
        self._window: torch.Tensor | None = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Note one micro-batch's loss (no host sync: the flag stays a tensor until the optimizer step)."""
        bad = ~torch.isfinite(loss.detach())
        self._window = bad if self._window is None else self._window | bad.to(self._window.device)

    def step_is_nonfinite(self, accelerator, finite_grads: torch.Tensor | None) -> bool:  # noqa: ANN001
        """Whether this optimizer step must be skipped, agreed by all processes; starts the next step's window.
        `finite_grads`: the gradient check (ignored under a grad scaler; None: not checked)."""
        bad = self._window.reshape(()) if self._window is not None else torch.tensor(False)
        self._window = None
        if finite_grads is not None and not self.scaled:
            bad = bad.to(finite_grads.device) | ~finite_grads.reshape(())
        return any_process(accelerator, bad)

    def record(self, nonfinite: bool, step: int, log: bool = True) -> None:
        """Count optimizer step `step`; with `log` (the main process), a warning for each skipped one."""
        if not nonfinite:
            self.streak = 0
            return
        self.streak += 1
        self.total += 1
        if not log:
            return
        logger.warning(
            "step %d: non-finite loss or gradients; optimizer step skipped (%d in a row, %d in all; the run stops "
            "at optim.max_nonfinite_steps=%d in a row)",
            step,
            self.streak,
            self.total,
            self.limit,
        )

    @property
    def diverged(self) -> bool:
        return self.streak >= self.limit

    def diverged_error(self, step: int, newest_checkpoint: str | None) -> TrainingDiverged:
        """The error that stops a diverged run at `step`."""
        kept = f"the newest checkpoint is {newest_checkpoint}" if newest_checkpoint else "no checkpoint was written"
        return TrainingDiverged(
            f"training diverged: the loss or gradients were not finite for {self.streak} optimizer steps in a row "
            f"(steps {step - self.streak + 1}-{step}; {self.total} skipped in all; optim.max_nonfinite_steps is "
            f"{self.limit}); {kept}. Lower optim.learning_rate or set optim.max_grad_norm"
        )

    def state_dict(self) -> dict[str, int]:
        return {"streak": self.streak, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.streak, self.total = int(state.get("streak", 0)), int(state.get("total", 0))

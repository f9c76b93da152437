"""One process's share of a job spread over several (`accelerate launch` or `torchrun`): which items are its own,
and the few values the processes agree on (the main process's, broadcast) or bring together (gathered on the main
process). A single process, the usual case, owns every item and touches no distributed state."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any


@dataclass
class ProcessShare:
    index: int = 0
    count: int = 1
    local_index: int = 0
    """This process's index on its machine (its GPU)."""

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def owns(self, item: int) -> bool:
        """Items are dealt round-robin: item i is process i mod count's."""
        return item % self.count == self.index

    def device(self, device: str) -> str:
        """A GPU device made this process's own GPU (cuda → cuda:<local index>); others as given."""
        if self.count > 1 and device == "cuda":
            return f"cuda:{self.local_index}"
        return device

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def gather(self, values: list) -> list:
        """Every process's `values`, joined in process order (on every process)."""
        if self.count == 1:
            return list(values)
        from accelerate.utils import gather_object

        return gather_object(values)

    def wait(self) -> None:
        if self.count > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def process_share() -> ProcessShare:
    """This process's share: launched as one of several (WORLD_SIZE > 1 in the environment), through Accelerate's
    state (which sets up the process group: NCCL on GPUs, gloo on CPUs; without a GPU it is told so, as `torchrun`
    on CPUs does not tell it and it would otherwise take each process for the whole job); else the whole job. The
    process group is taken down as the process exits: left to the interpreter's teardown, gloo's threads abort it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessShare()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    atexit.unregister(_end_process_group)  # once, however many times the share is asked for
    atexit.register(_end_process_group)
    return ProcessShare(state.process_index, state.num_processes, state.local_process_index)

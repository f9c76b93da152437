"""Training checkpoints: the folder layout, atomic writing, keep-last-N, and which checkpoint a run resumes from.

A checkpoint folder `output_dir/checkpoints/checkpoint-<step>/` holds
- `accelerate/`: Accelerate's `save_state` (trained weights, optimizer, grad scaler, global RNG states);
- `rank/<r>.pt`: each process's own noise/timestep generator and data position (epoch, batches taken) — ranks
  reading tar shards can be at different places;
- `trainer_state.json`: step, the main process's data position, the LR schedule's state, the non-finite step
  counts, the full config and its paths resolved (checked on resume);
- the exports: `motion_module.safetensors` (official layout) and `motion_module_diffusers/` (a temporal
  convolution has no diffusers layout) — or, for a MotionLoRA run, `motion_lora.safetensors` (official) and
  `motion_lora_diffusers/`; for a domain adapter run, `domain_adapter.safetensors` and `domain_adapter_diffusers/`.
It is written under a hidden temporary name and renamed when complete; a checkpoint that is replaced or pruned is
first renamed to a hidden name and then deleted. So a run killed at any point leaves only complete checkpoints
where `resume_from: latest` looks, and the next save clears the hidden leftovers. `resume.py` checks and loads
them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from animatediff.errors import InputError, InputNotFound
from animatediff.train.config import TrainConfig
from animatediff.train.config_paths import resolved_paths

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_TEMPORARY = ".tmp-"
_DISCARDED = ".deleting-"


def checkpoints_root(config: TrainConfig) -> Path:
    return Path(config.output_dir) / "checkpoints"


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from: an explicit folder, the newest one for "latest", or None (refused when
    output_dir already holds checkpoints, which a fresh run would overwrite)."""
    spec = config.checkpoint.resume_from
    if spec is None:
        found = list_checkpoints(checkpoints_root(config))
        if found:
            raise InputError(
                f"{config.output_dir} already holds checkpoints of a run (newest: {found[-1].name}); set "
                "checkpoint.resume_from=latest to continue it, or choose another output_dir"
            )
        return None
    if spec == "latest":
        found = list_checkpoints(checkpoints_root(config))
        return found[-1] if found else None
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise InputNotFound(f"checkpoint.resume_from: {path} is not a training checkpoint (no {STATE_FILE})")
    return path


def read_state(path: Path) -> dict:
    """A checkpoint's `trainer_state.json`; an InputError naming the file when it is not readable JSON."""
    file = path / STATE_FILE
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{file} is not readable JSON, truncated or damaged? ({err})") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "step" not in state:
        raise InputError(f"{file} is not a trainer state (no step and config)")
    return state


def save_checkpoint(
    accelerator,  # noqa: ANN001 - accelerate.Accelerator
    config: TrainConfig,
    state: dict,
    rank_state: dict,
    export: Callable[[Path], None],
) -> Path | None:
    """Write a checkpoint for `state["step"]` on all processes; returns its folder (on the main process).

    `state` (JSON values) goes into `trainer_state.json` with the config; `rank_state` is this process's own part
    (generator state, data position), saved under `rank/<r>.pt`.
    """
    root = checkpoints_root(config)
    name = f"checkpoint-{state['step']:08d}"
    tmp = root / f"{_TEMPORARY}{name}"
    final = root / name
    if accelerator.is_main_process:
        clear_leftovers(root)
        (tmp / "rank").mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))
    write_rank_state(tmp / "rank" / f"{accelerator.process_index}.pt", rank_state)
    export(tmp)  # every process calls it: gathering sharded (ZeRO-3/FSDP) weights is collective
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        full_state = {
            **state,
            "num_processes": accelerator.num_processes,
            "config": config.to_dict(),
            "paths": resolved_paths(config),
        }
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=2))
        publish(tmp, final)
        prune(root, config.checkpoint.keep_last)
    accelerator.wait_for_everyone()
    return final if accelerator.is_main_process else None


def write_rank_state(path: Path, rank_state: dict) -> None:
    """One process's own part of a checkpoint: tensors and plain values, readable with torch's weights-only load."""
    torch.save(rank_state, path)


def publish(tmp: Path, final: Path) -> None:
    """Rename the complete `tmp` folder to `final`; a checkpoint already there (the same step, written again) is
    moved aside first and deleted after."""
    replaced = final.with_name(f"{_DISCARDED}{final.name}")
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(tmp, final)
    shutil.rmtree(replaced, ignore_errors=True)


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint folder: renamed to a hidden name first (atomic), so it never lies half-deleted where
    `resume_from: latest` would take it."""
    hidden = checkpoint.with_name(f"{_DISCARDED}{checkpoint.name}")
    shutil.rmtree(hidden, ignore_errors=True)
    os.replace(checkpoint, hidden)
    shutil.rmtree(hidden)


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all)."""
    if keep_last <= 0:
        return
    for old in list_checkpoints(root)[:-keep_last]:
        discard(old)


def clear_leftovers(root: Path) -> None:
    """Remove what killed saves left under `root`: half-written and half-deleted checkpoint folders."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith((_TEMPORARY, _DISCARDED)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

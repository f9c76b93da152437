"""Training checkpoints: atomic folders, keep-last-N, resume checks, and the motion-module exports.

A checkpoint folder `output_dir/checkpoints/checkpoint-<step>/` holds
- `accelerate/`: Accelerate's `save_state` (model, optimizer, LR schedule, grad scaler, global RNG states);
- `rank/<r>.pt`: each process's own noise/timestep generator and data position (epoch, batches taken) — ranks
  reading tar shards can be at different places;
- `trainer_state.json`: step, the main process's data position and the full config (checked on resume);
- the exports: `motion_module.safetensors` (official layout) and `motion_module_diffusers/` — or, for a
  MotionLoRA run, `motion_lora.safetensors` (official) and `motion_lora_diffusers/`.
It is written under a hidden temporary name and renamed when complete, so a killed run never leaves a
half-written checkpoint where `resume_from: latest` would pick it up.
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

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# Fields that may change between a run and its resumption: they do not change what the weights become.
RESUMABLE_CHANGES = (
    "output_dir",
    "optim.max_steps",
    "data.num_workers",
    "logging.",
    "checkpoint.",
    "validation.",
)


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


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def read_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text())


# Fields added after checkpoints were first written, with the value such a checkpoint's run used.
ADDED_FIELDS = {
    "optim.loss_weighting": "none",
    "optim.snr_gamma": 5.0,
    "optim.max_loss_weight": 1000.0,
    "optim.zero_terminal_snr": None,
    "optim.timestep_bias": "none",
    "optim.timestep_bias_portion": 0.25,
    "optim.timestep_bias_multiplier": 1.0,
}


# Fields that have since left the config, with the value that meant what the config without them means.
REMOVED_FIELDS = {"data.world_motions": [], "data.world_growth_core": False}


def check_resumable(path: Path, config: TrainConfig, num_processes: int) -> dict:
    """The checkpoint's trainer state, after checking it was written by the same config; else an InputError."""
    state = read_state(path)
    saved = ADDED_FIELDS | _flatten(state["config"])
    for key, value in REMOVED_FIELDS.items():
        if key in saved and saved[key] == value:
            del saved[key]
    current = _flatten(config.to_dict())
    differing = [
        f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key) and not key.startswith(RESUMABLE_CHANGES)
    ]
    if state.get("num_processes", num_processes) != num_processes:
        differing.append(
            f"num_processes: checkpoint {state['num_processes']}, now {num_processes} (the data order depends on it)"
        )
    if differing:
        raise InputError(
            f"cannot resume from {path}: it was written with a different config; differing fields: "
            + "; ".join(differing)
        )
    return state


def save_checkpoint(
    accelerator,  # noqa: ANN001 - accelerate.Accelerator
    config: TrainConfig,
    state: dict,
    rank_state: dict,
    export: Callable[[Path], None],
) -> Path | None:
    """Write a checkpoint for `state["step"]` on all processes; returns its folder (on the main process).

    `rank_state` is this process's own part (generator state, data position), saved under `rank/<r>.pt`.
    """
    root = checkpoints_root(config)
    name = f"checkpoint-{state['step']:08d}"
    tmp = root / f".tmp-{name}"
    final = root / name
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rank").mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))
    torch.save(rank_state, tmp / "rank" / f"{accelerator.process_index}.pt")
    export(tmp)  # every process calls it: gathering sharded (ZeRO-3/FSDP) weights is collective
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        full_state = {**state, "num_processes": accelerator.num_processes, "config": config.to_dict()}
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune(root, config.checkpoint.keep_last)
    accelerator.wait_for_everyone()
    return final if accelerator.is_main_process else None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all)."""
    if keep_last <= 0:
        return
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old)


def load_checkpoint(accelerator, path: Path, expected_keys: list[str]) -> dict:  # noqa: ANN001
    """Restore Accelerate's state (trained weights, optimizer, scheduler, scaler, RNGs); return this process's
    own part. The frozen base is not in checkpoints, so the model loads non-strictly after checking that every
    trained weight is there."""
    from safetensors import safe_open

    own = path / "rank" / f"{accelerator.process_index}.pt"
    if not own.is_file():
        raise InputNotFound(
            f"{own} is missing: the checkpoint was not written by {accelerator.num_processes} processes"
        )

    weights = path / "accelerate" / "model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as f:
            saved = {k.removeprefix("module.") for k in f.keys()}
        missing = [k for k in expected_keys if k not in saved]
        if missing:
            raise InputError(f"{path}: {len(missing)} trained weights missing from the checkpoint, e.g. {missing[:3]}")
    from accelerate.utils import DistributedType

    # DeepSpeed and FSDP save and load whole engine states themselves; only the plain path drops the frozen base.
    plain = accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.FSDP)
    accelerator.load_state(str(path / "accelerate"), **({"strict": False} if plain else {}))
    return torch.load(own, weights_only=True)

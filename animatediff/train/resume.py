"""Resuming a run from a checkpoint: is it the same run, are its files whole, and restoring it.

Nothing in a checkpoint folder is trusted to run code: JSON and safetensors are plain data, and every torch file
(Accelerate's optimizer, scaler and RNG states, the old LR-schedule file, `rank/<r>.pt`) is read with torch's
weights-only unpickler, with the numpy arrays Accelerate's RNG states hold allowed. For a plain (one device or
DDP) run this module restores Accelerate's files itself instead of `Accelerator.load_state`, which unpickles the
state of objects registered for checkpointing with `weights_only=False`. DeepSpeed and FSDP engines read their
own shard folders (`accelerate/*/`); those files are theirs.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from animatediff.errors import InputError, InputNotFound
from animatediff.train.checkpoints import read_state
from animatediff.train.config import TrainConfig
from animatediff.train.config_paths import PATH_FIELDS, resolve_path_value, resolved_paths

# Fields that may change between a run and its resumption: they do not change what the weights become.
RESUMABLE_CHANGES = (
    "output_dir",
    "optim.max_steps",
    "optim.max_nonfinite_steps",
    "data.num_workers",
    "logging.",
    "checkpoint.",
    "validation.",
)
# Fields added after checkpoints were first written, with the value such a checkpoint's run used.
ADDED_FIELDS = {
    "optim.loss_weighting": "none",
    "optim.snr_gamma": 5.0,
    "optim.max_loss_weight": 1000.0,
    "optim.zero_terminal_snr": None,
    "optim.timestep_bias": "none",
    "optim.timestep_bias_portion": 0.25,
    "optim.timestep_bias_multiplier": 1.0,
    "controlnet.enabled": False,
    "controlnet.init": None,
    "controlnet.annotator": "canny",
    "controlnet.kind": "controlnet",
    "controlnet.max_keyframes": 3,
    "controlnet.first_frame_rate": 0.5,
    "model.adapter_lora": None,
    "model.adapter_lora_scale": 1.0,
    "adapter.enabled": False,
    "adapter.rank": 32,
    "adapter.alpha": None,
    "model.scratch.design": "transformer",
}

# Fields that have since left the config, with the value that meant what the config without them means.
REMOVED_FIELDS = {"data.world_motions": [], "data.world_growth_core": False}

# Where checkpoints written before the LR schedule moved into trainer_state.json keep it (Accelerate's name).
OLD_SCHEDULER_FILE = "custom_checkpoint_0.pkl"
_TORCH_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def check_resumable(path: Path, config: TrainConfig, num_processes: int) -> dict:
    """The checkpoint's trainer state, after checking it was written by the same run (config, its paths resolved,
    process count) and is not past `optim.max_steps`; else an InputError."""
    state = read_state(path)
    saved = ADDED_FIELDS | _flatten(state["config"])
    for key, value in REMOVED_FIELDS.items():
        if key in saved and saved[key] == value:
            del saved[key]
    current = _flatten(config.to_dict())
    # Paths compare resolved: the same file named relatively or absolutely is the same input. Checkpoints from
    # before the resolved paths were stored resolve theirs here.
    saved_paths = state.get("paths") or {key: resolve_path_value(saved.get(key)) for key in PATH_FIELDS}
    current_paths = resolved_paths(config)
    differing = []
    for key in sorted(set(saved) | set(current)):
        before, now = saved.get(key), current.get(key)
        if key in PATH_FIELDS:
            if saved_paths.get(key) != current_paths[key]:
                differing.append(
                    f"{key}: checkpoint {before!r} ({saved_paths.get(key)!r}), now {now!r} ({current_paths[key]!r})"
                )
        elif before != now and not key.startswith(RESUMABLE_CHANGES):
            differing.append(f"{key}: checkpoint {before!r}, now {now!r}")
    if state.get("num_processes", num_processes) != num_processes:
        differing.append(
            f"num_processes: checkpoint {state['num_processes']}, now {num_processes} (the data order depends on it)"
        )
    if differing:
        raise InputError(
            f"cannot resume from {path}: it was written with a different config; differing fields: "
            + "; ".join(differing)
        )
    if state["step"] > config.optim.max_steps:
        raise InputError(
            f"checkpoint {path} is at step {state['step']}, beyond optim.max_steps {config.optim.max_steps}: "
            "raise optim.max_steps to train on, or resume from an earlier checkpoint"
        )
    return state


# ------------------------------------------------------------------------------------------ reading files


def _numpy_globals() -> list:
    """What Accelerate's RNG-state files need beyond tensors and plain values (numpy arrays and dtypes)."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    return list(TORCH_SAFE_GLOBALS)


def read_torch_file(path: Path, mmap: bool = False) -> object:
    """A torch-saved file, read with the weights-only unpickler; an InputError naming the file when it is missing,
    damaged, or holds anything that unpickling would have to run code for. `mmap`: map the tensors instead of
    reading them (a cheap check that the file is whole)."""
    if not path.is_file():
        raise InputNotFound(f"{path} is missing from the checkpoint")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        detail = re.search(r"WeightsUnpickler error: ([^.]*)", str(err))
        if detail is None and "Weights only load failed" not in str(err):
            raise InputError(f"{path} is not a readable torch file, truncated or damaged? ({err})") from None
        what = detail.group(1).strip() if detail else "not plain data"
        raise InputError(
            f"refusing to load {path}: it holds more than tensors and plain values ({what}), and unpickling it "
            "could run code"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch reports damaged files as RuntimeError, EOFError, ...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path} is not a readable torch file, truncated or damaged? ({first})") from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; an InputError naming the file when it is missing or damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputNotFound(f"{path} is missing from the checkpoint")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable safetensors file, truncated or damaged? ({err})") from None


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable safetensors file, truncated or damaged? ({err})") from None


def verify_checkpoint(path: Path, process_index: int) -> None:
    """Before any weights load: the files this process will read from the checkpoint are there, whole, and plain
    data (torch files are mapped, not read; every torch file of `accelerate/` and `rank/` is checked)."""
    own = path / "rank" / f"{process_index}.pt"
    if not own.is_file():
        raise InputNotFound(f"{own} is missing: the checkpoint was not written by this many processes")
    folder = path / "accelerate"
    if not folder.is_dir():
        raise InputNotFound(f"{folder} is missing from the checkpoint")
    for file in [*sorted(folder.iterdir()), *sorted((path / "rank").iterdir())]:
        if file.suffix in _TORCH_SUFFIXES and file.is_file():
            read_torch_file(file, mmap=True)
    weights = folder / "model.safetensors"
    if weights.is_file():
        _safetensors_keys(weights)


# ------------------------------------------------------------------------------------------------ loading


def scheduler_state(path: Path, state: dict) -> dict:
    """The LR schedule's state: from trainer_state.json, or from the file Accelerate wrote for it in older
    checkpoints (read weights-only)."""
    if "lr_scheduler" in state:
        return state["lr_scheduler"]
    old = path / "accelerate" / OLD_SCHEDULER_FILE
    if old.is_file():
        loaded = read_torch_file(old)
        if isinstance(loaded, dict):
            return loaded
        raise InputError(f"{old} holds a {type(loaded).__name__}, not an LR schedule's state")
    raise InputNotFound(f"{path} holds no LR schedule state (in trainer_state.json or accelerate/{OLD_SCHEDULER_FILE})")


def load_checkpoint(accelerator, model, optimizer, path: Path, expected_keys: list[str]) -> dict:  # noqa: ANN001
    """Restore the trained weights, optimizer, grad scaler and global RNG states that Accelerate's `save_state`
    wrote; return this process's own part (`rank/<r>.pt`). The frozen base is not in checkpoints, so the model
    loads non-strictly, after checking that every trained weight (`expected_keys`) is there."""
    from accelerate.utils import DistributedType

    folder = path / "accelerate"
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        accelerator.load_state(str(folder))  # the engines load their own states; nothing is registered with it
    else:
        _load_plain_state(accelerator, model, optimizer, folder, expected_keys)
    own = read_torch_file(path / "rank" / f"{accelerator.process_index}.pt")
    if not isinstance(own, dict) or "generator" not in own:
        raise InputError(f"{path / 'rank' / f'{accelerator.process_index}.pt'} is not a rank state")
    return own


def _load_plain_state(accelerator, model, optimizer, folder: Path, expected_keys: list[str]) -> None:  # noqa: ANN001
    """Accelerate's `load_accelerator_state` for one model and one optimizer, every file read weights-only."""
    from accelerate.utils import MODEL_NAME, OPTIMIZER_NAME, RNG_STATE_NAME, SAFE_MODEL_NAME, SCALER_NAME

    weights_file = folder / f"{SAFE_MODEL_NAME}.safetensors"
    if not weights_file.is_file():
        weights_file = folder / f"{MODEL_NAME}.bin"
    weights = read_safetensors(weights_file) if weights_file.suffix == ".safetensors" else read_torch_file(weights_file)
    if not isinstance(weights, dict):
        raise InputError(f"{weights_file} holds a {type(weights).__name__}, not a state dict")
    saved = {k.removeprefix("module.") for k in weights}
    missing = [k for k in expected_keys if k not in saved]
    if missing:
        raise InputError(
            f"{folder.parent}: {len(missing)} trained weights missing from the checkpoint, e.g. {missing[:3]}"
        )
    unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
    if unexpected:
        raise InputError(f"{weights_file}: {len(unexpected)} weights this model does not have, e.g. {unexpected[:3]}")
    optimizer.load_state_dict(read_torch_file(folder / f"{OPTIMIZER_NAME}.bin"))
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(read_torch_file(folder / SCALER_NAME))
    rng_file = folder / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    states = read_torch_file(rng_file)
    try:
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])
        torch.set_rng_state(states["torch_manual_seed"])
        _set_device_rng_state(states)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{rng_file} is not an RNG state ({type(err).__name__}: {err})") from None
    accelerator.step = int(states.get("step", 0))


def _set_device_rng_state(states: dict) -> None:
    """The accelerator's RNG state, as Accelerate's `load_accelerator_state` restores it."""
    from accelerate.utils.imports import get_torch_accelerator_backend

    device_type, device_module = get_torch_accelerator_backend()
    key = f"torch_{device_type}_manual_seed"
    if device_type is None or key not in states:
        return
    if device_module is torch.accelerator:
        torch.get_device_module(device_type).set_rng_state(states[key])
    elif device_type == "mps":
        device_module.set_rng_state(states[key])
    else:
        device_module.set_rng_state_all(states[key])

"""Reading and writing raw state dicts: .safetensors and torch pickles (.ckpt/.pt/.pth/.bin).

Files are written atomically (`write_atomic`, from `animatediff.io.atomic`, importable from here too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from animatediff.errors import InputError, InputNotFound
from animatediff.hub import resolve_path
from animatediff.io.atomic import write_atomic

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """(tensors and other entries, safetensors metadata) from a weights file; clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
            return load_file(str(path)), metadata
        except (SafetensorError, OSError, ValueError) as err:
            with path.open("rb") as f:
                head = f.read(2)
            hint = " It looks like a torch pickle: rename it to .ckpt." if head[:1] == b"\x80" or head == b"PK" else ""
            raise InputError(f"{path} is not a readable safetensors file ({err}).{hint}") from None
    if path.suffix in PICKLE_SUFFIXES:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
            raise InputError(
                f"{path} is not a readable torch checkpoint ({type(err).__name__}: {_pickle_error(err)})"
            ) from None
        if not isinstance(sd, dict):
            raise InputError(f"{path} holds a {type(sd).__name__}, not a state dict")
        return sd, {}
    raise InputError(
        f"{path}: unsupported weights file extension {path.suffix!r} "
        f"(expected .safetensors or one of {', '.join(PICKLE_SUFFIXES)})"
    )


def _pickle_error(err: Exception) -> str:
    """One line of torch.load's error: what weights_only refused (code or an object, never run), else its first."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        return f"{detail.split('. Please use')[0].rstrip('.')}; read with weights_only, which runs nothing in the file"
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def read_weights(path_or_id: str | os.PathLike, kind: str) -> tuple[dict, Path]:
    """A weights file given as a path, a hub reference, or a folder holding exactly one weights file.

    Returns (entries with any `{"state_dict": ...}` wrapper peeled off, the file read).
    """
    path = resolve_path(path_or_id, kind)
    if path.is_dir():  # e.g. a diffusers hub repo with one weights file inside
        found = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if len(found) != 1:
            raise InputNotFound(f"{path}: expected one {kind} weights file in the folder, found {len(found)}")
        path = found[0]
    sd, _ = read_state_dict(path)
    if isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    return sd, path


def non_finite(tensors: dict) -> dict[str, int]:
    """How many values of each floating-point tensor are NaN or inf (only the tensors that hold any)."""
    counts = {}
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            counts[key] = int((~torch.isfinite(value)).sum())
    return counts


def write_state_dict(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Save as .safetensors (metadata in the header) or as a torch pickle (metadata as plain entries)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if path.suffix == ".safetensors":
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata or {}))
    elif path.suffix in PICKLE_SUFFIXES:
        payload: dict = dict(tensors)
        for key, value in (metadata or {}).items():
            payload[key] = json.loads(value)
        write_atomic(path, lambda tmp: torch.save(payload, str(tmp)))
    else:
        raise InputError(f"{path}: unsupported weights file extension {path.suffix!r}")
    return path

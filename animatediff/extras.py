"""Optional packages a task needs, checked before its first stage: a one-line error naming what to install."""

from __future__ import annotations

import importlib

from animatediff.errors import InputError

EXTRAS = {"peft": "train", "tensorboard": "train"}
"""The pyproject extra that installs each optional package."""


def require(package: str, purpose: str) -> None:
    """Raise an InputError saying how to install `package` when it cannot be imported; `purpose` says what for."""
    try:
        importlib.import_module(package)
    except ImportError:
        extra = EXTRAS.get(package)
        how = f"pip install 'animatediff[{extra}]' (or {package})" if extra else f"pip install {package}"
        raise InputError(f"{purpose} needs {package}, which is not installed: {how}") from None

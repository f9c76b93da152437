"""Optional packages a task needs, checked before its first stage: a one-line error naming what to install."""

from __future__ import annotations

import importlib

from animatediff.errors import InputError

EXTRAS = {"peft": "train", "tensorboard": "train", "cv2": "control"}
"""The pyproject extra that installs each optional package."""
PIP_NAMES = {"cv2": "opencv-python-headless"}
"""The name to pip-install a package by, where it is not its import name."""


def require(package: str, purpose: str) -> None:
    """Raise an InputError saying how to install `package` when it cannot be imported; `purpose` says what for."""
    try:
        importlib.import_module(package)
    except ImportError:
        extra = EXTRAS.get(package)
        name = PIP_NAMES.get(package, package)
        how = f"pip install 'animatediff[{extra}]' (or {name})" if extra else f"pip install {name}"
        raise InputError(f"{purpose} needs {package}, which is not installed: {how}") from None

"""The error our own checks raise for bad input, so that the CLI can tell it from a bug.

`InputError` says what is wrong with what the user gave (a value, a name, a file) in one line; the CLI prints that
line and exits 2. Any other exception is a bug, or a failure we did not foresee, and keeps its traceback.
"""

from __future__ import annotations

import math


class InputError(ValueError):
    """A value, a name or a file the user gave is not usable; the message says why, in one line."""


class InputNotFound(InputError, FileNotFoundError):
    """A path or hub id the user gave names nothing that exists."""


def non_negative(value: object, what: str, hint: str = "") -> float:
    """`value` as a float where it is a finite number ≥ 0 (not a bool); else the InputError "{what} {value!r} must be
    a number ≥ 0", with ` ({hint})` after it where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{what} {value!r} must be a number ≥ 0" + (f" ({hint})" if hint else ""))
    return float(value)

"""The error our own checks raise for bad input, so that the CLI can tell it from a bug.

`InputError` says what is wrong with what the user gave (a value, a name, a file) in one line; the CLI prints that
line and exits 2. Any other exception is a bug, or a failure we did not foresee, and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A value, a name or a file the user gave is not usable; the message says why, in one line."""


class InputNotFound(InputError, FileNotFoundError):
    """A path or hub id the user gave names nothing that exists."""

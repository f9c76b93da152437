"""A1111's composable prompts (Liu et al. 2022, "Compositional Visual Generation with Composable Diffusion Models"):
`a red circle AND moving up :0.8` is two prompts, each pushing the prediction its own way with its own weight.

A prompt is split at every `AND` written in capitals as a word of its own (not "and", not "ANDROID"); a part ending in
`:number` takes that weight (1 otherwise), the number and its colon left out of the text. Guided by scale s, the
prediction is ε_u + s · Σᵢ wᵢ (εᵢ − ε_u), as A1111's `combine_denoised` makes it: one negative prompt, each part's
own conditional prediction. A prompt without `AND` is one part of weight 1, plain guidance.
"""

from __future__ import annotations

import re

from animatediff.errors import InputError

AND = re.compile(r"\bAND\b")
"""Where A1111 splits a prompt."""
WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*$")
"""A part's weight: a colon and a number at its end."""


def has_and(prompt: str) -> bool:
    """Whether `prompt` has an `AND` that A1111 splits it at."""
    return bool(AND.search(prompt))


def composed_parts(prompt: object) -> list[tuple[str, float]] | None:
    """The parts of a call's `prompt` (`split_and`), or None where it reads as one text (one part of weight 1, or
    prompts that are not one string and hold no `AND`); one line for a batch or keyframes with `AND` in them."""
    if not isinstance(prompt, str):
        texts = prompt.values() if isinstance(prompt, dict) else prompt
        if any(isinstance(t, str) and has_and(t) for t in texts):
            raise InputError(
                "composable prompts (AND) read one prompt string; give one prompt, not a list or keyframes"
            )
        return None
    parts = split_and(prompt)
    return None if parts == [(prompt.strip(), 1.0)] else parts


def split_and(prompt: str) -> list[tuple[str, float]]:
    """[(text, weight)] of each part of `prompt`, in order (one part of weight 1 without `AND`)."""
    parts = []
    for part in AND.split(prompt):
        weight = WEIGHT.search(part)
        if weight is None:
            parts.append((part.strip(), 1.0))
        else:
            parts.append((part[: weight.start()].strip(), float(weight.group(1))))
    return parts

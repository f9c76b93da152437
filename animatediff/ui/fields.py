"""The form's fields checked one by one: numbers within their ranges, choices among their options, lists of
scaled models; each error is one line naming the field."""

from __future__ import annotations

from typing import Any

from animatediff.errors import InputError

LIMITS = {
    "frames": (1, 512),
    "width": (8, 2048),
    "height": (8, 2048),
    "steps": (1, 200),
    "guidance_scale": (0.0, 50.0),
    "seed": (0, 2**63 - 1),
    "fps": (1.0, 60.0),
    "context_length": (1, 512),
    "context_overlap": (0, 511),
    "context_stride": (1, 16),
    "free_init_iters": (1, 8),
    "strength": (0.01, 1.0),
    "latent_scale": (0.01, 1000.0),
    "scale": (-4.0, 4.0),
    "frame": (-1, 511),
    "ip_scale": (0.0, 4.0),
    "ddim_eta": (0.0, 1.0),
    "ip_scale_2": (0.0, 4.0),
    "start": (0.0, 1.0),
    "end": (0.0, 1.0),
    "motion_scale": (0.0, 4.0),
    "motion_attention_scale": (0.0, 4.0),
    "clip_skip": (1, 12),
    "pag_scale": (0.0, 20.0),
    "hires_scale": (1.0, 4.0),
    "hires_strength": (0.01, 1.0),
    "reference_fidelity": (0.0, 1.0),
}
"""Inclusive ranges of the numeric fields (the form states the same bounds)."""


def number(raw: dict, key: str, kind: type, default: Any, label: str | None = None) -> Any:
    """`raw[key]` as `kind` within its `LIMITS` (a scale's unless listed); `default` where absent or empty."""
    value = raw.get(key, default)
    if value is None or value == "":
        return default
    label = label or key.replace("_", " ")
    try:
        checked = kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{label}: {value!r} is not a number") from None
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise InputError(f"{label}: {value!r} is not a whole number")
    low, high = LIMITS.get(key, LIMITS["scale"])
    if not low <= checked <= high:
        raise InputError(f"{label}: {checked} is outside {low}–{high}")
    return checked


def scaled(raw: object, label: str) -> list[tuple[str, float]]:
    """A list of {id, scale} as (id, scale) pairs."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) and item.get("id") for item in raw):
        raise InputError(f"{label}: expected a list of {{id, scale}}")
    return [(str(item["id"]), number(item, "scale", float, 1.0, f"{label} scale")) for item in raw]


def choice(value: object, choices: tuple[str, ...] | list[str], label: str) -> str:
    """`value`, one of `choices`."""
    if value not in choices:
        raise InputError(f"{label}: {value!r} is not one of {', '.join(choices)}")
    return str(value)

"""A run entry's LoRA lists, `lora_configs` and `motion_module_lora_configs`: [{path, alpha}], an image LoRA's item
also with a `ramp` of its scale over the steps (`pipeline/lora_ramp.py`), or with the `regions` it acts in and its
`scale`, a number or {frame: scale} keyframes (`pipeline/region_loras.py`; its `alpha` is then the scale its
text-encoder part reads the prompts at)."""

from __future__ import annotations

import difflib

from animatediff.errors import InputError
from animatediff.pipeline.lora_ramp import check_ramp
from animatediff.pipeline.region_loras import region_lora_keys


def check_lora_keys(values: dict, where: str) -> None:
    """Both lists checked, and set as lists, in place; an InputError starting with `where`."""
    for key in ("motion_module_lora_configs", "lora_configs"):
        values[key] = _lora_configs(values.get(key) or [], key, where)


def _lora_configs(loras: object, key: str, where: str) -> list[dict]:
    """A list of LoRAs as [{path, alpha}] (motion_module_lora_configs, lora_configs: also `ramp`), checked."""
    if not isinstance(loras, list) or not all(isinstance(c, dict) and "path" in c for c in loras):
        raise InputError(f"{where}: {key} must be a list of {{path, alpha}} mappings")
    known = ["path", "alpha", "ramp", "regions", "scale"] if key == "lora_configs" else ["path", "alpha"]
    for c in loras:
        for name in set(c) - set(known):
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected {' and '.join(known)}"
            raise InputError(f"{where}: {key}: unknown key {name!r}{hint}")
        if "ramp" in c:
            check_ramp(c["ramp"], f"{where}: {key} ramp")
        if "regions" in c or "scale" in c:
            if "ramp" in c:
                raise InputError(f"{where}: {key}: a LoRA is ramped over the steps or set per region, not both")
            c.update(region_lora_keys(c, f"{where}: {key}"))
        if not isinstance(c["path"], str) or not c["path"]:
            raise InputError(f"{where}: {key} path must be a path, got {c['path']!r}")
        alpha = c.get("alpha", 1.0)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise InputError(f"{where}: {key} alpha must be a number, got {alpha!r}")
    return loras

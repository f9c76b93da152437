"""A prompt-config entry's text keys, named after `generate`'s flags: `clip_skip` (--clip-skip), `prompt_weighting`
(--prompt-weighting), `long_prompts` (--long-prompts), `prompt_editing` (--prompt-editing), `prompt_and` (--prompt-and),
`prompt_2` and `n_prompt_2` (--prompt-2, --negative-prompt-2), `lora_dir` (--lora-dir: where the prompts'
`<lora:NAME:WEIGHT>` tags find their files) and `embeddings` (--embedding), checked in place while the entry is parsed,
before any model loads; and its prompt-travel keys (`prompt_map`, `head_prompt`, `tail_prompt`, `prompt_interpolation`,
`prompt_travel_loop`, `prompt_fixed_ratio`: `check_travel_keys`).
"""

from __future__ import annotations

from animatediff.errors import InputError
from animatediff.pipeline.prompt_travel import INTERPOLATIONS, check_fixed_ratio, keyframes
from animatediff.prompt_chunks import LONG_PROMPTS
from animatediff.prompt_weights import WEIGHTINGS
from animatediff.text_encoding import check_clip_skip


def check_text_keys(values: dict, where: str) -> None:
    """The text keys of an entry's raw `values` checked (`where` names the entry in errors); lora_dir and embeddings
    made lists of paths."""
    if "clip_skip" in values:
        try:
            check_clip_skip(values["clip_skip"])
        except InputError as err:
            raise InputError(f"{where}: clip_skip: {err}") from None
    for key, choices, default in (("prompt_weighting", WEIGHTINGS, "none"), ("long_prompts", LONG_PROMPTS, "truncate")):
        if values.get(key, default) not in choices:
            raise InputError(f"{where}: {key} {values[key]!r}: choose one of {', '.join(choices)}")
    for key in ("prompt_editing", "prompt_and"):
        if not isinstance(values.get(key, False), bool):
            raise InputError(f"{where}: {key} must be true or false, got {values[key]!r}")
    for key in ("prompt_2", "n_prompt_2"):
        if not isinstance(values.get(key) or "", str):
            raise InputError(f"{where}: {key} must be a string, got {values[key]!r}")
    _check_paths(values, "lora_dir", "a folder or a list of folders", where)
    _check_paths(values, "embeddings", "a list of paths", where)


def _check_paths(values: dict, key: str, what: str, where: str) -> None:
    """`key` made a list of paths in place: one path, a list of them, or unset (none)."""
    paths = values.get(key) or []
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"{where}: {key} must be {what}, got {values[key]!r}")
    values[key] = paths


def check_travel_keys(values: dict, where: str) -> None:
    """An entry's prompt-travel keys checked in place: prompt_map (instead of prompt) as keyframes, head/tail text,
    interpolation, loop and fixed ratio."""
    if "prompt_map" in values:
        if values.get("prompt"):
            raise InputError(
                f"{where}: give 'prompt' (one video each) or 'prompt_map' (one travelling video), not both"
            )
        values["prompt_map"] = keyframes(values["prompt_map"], f"{where}: prompt_map")
    for key in ("head_prompt", "tail_prompt"):
        if not isinstance(values.get(key) or "", str):
            raise InputError(f"{where}: {key} must be a string, got {values[key]!r}")
        values[key] = values.get(key) or ""
    mode = values.get("prompt_interpolation", "linear")
    if mode not in INTERPOLATIONS:
        raise InputError(f"{where}: prompt_interpolation {mode!r}: choose one of {', '.join(INTERPOLATIONS)}")
    if not isinstance(values.get("prompt_travel_loop", False), bool):
        raise InputError(f"{where}: prompt_travel_loop must be true or false, got {values['prompt_travel_loop']!r}")
    try:
        check_fixed_ratio(values.get("prompt_fixed_ratio", 0.0))
    except InputError as err:
        raise InputError(f"{where}: {err}") from None

"""The file and folder paths of a training config, resolved: a resumed run compares them so, and a checkpoint
records them (the same file named relatively or absolutely is the same input)."""

from __future__ import annotations

from pathlib import Path

from animatediff.train.config import TrainConfig

PATH_FIELDS = (
    "model.base",
    "model.init_motion_module",
    "model.adapter_lora",
    "data.csv",
    "data.video_folder",
    "data.shards",
    "controlnet.init",
)
"""Config fields naming files or folders: a resumed run compares them as resolved paths."""


def resolve_path_value(value: object) -> object:
    """A path field's value as an absolute, resolved path; a list entry by entry. A value that names nothing on
    disk (a hub id, a glob) stays as given, but a glob's folder is resolved when it exists."""
    if isinstance(value, (list, tuple)):
        return [resolve_path_value(v) for v in value]
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if any(ch in path.name for ch in "*?[") and path.parent.is_dir():
        return str(path.parent.resolve() / path.name)
    return value


def resolved_paths(config: TrainConfig) -> dict[str, object]:
    """{field: resolved value} for the config's PATH_FIELDS."""
    sections = config.to_dict()
    out = {}
    for key in PATH_FIELDS:
        section, name = key.split(".")
        out[key] = resolve_path_value(sections[section][name])
    return out

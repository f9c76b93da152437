"""Typed dataclass configs from plain nested values (YAML, JSON, `key.sub=value` overrides), checked field by field.

The training config and the world recipe are both trees of dataclasses; this turns a nested dict into one, converting
what YAML reads loosely (ints for floats, lists for tuples, "1e-4" as a string) and naming an unknown key with the
nearest one the config has, instead of failing inside a constructor.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing

import yaml

from animatediff.errors import InputError


def field_names(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a config class accepts."""
    names = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            names.extend(field_names(hints[f.name], f"{prefix}{f.name}."))
    return names


class _UnknownKey(InputError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def dataclass_from_dict(cls: type, values: dict, what: str = "config"):  # noqa: ANN201 - an instance of cls
    """`cls(**values)`, nested dataclasses included, each value checked against its field's type; an unknown key
    raises InputError naming it and the closest known key. `what` names the config in messages."""
    try:
        return _build(cls, values)
    except _UnknownKey as err:
        close = difflib.get_close_matches(err.key, field_names(cls), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown {what} key {err.key!r}{hint}") from None


def _build(cls: type, values: dict, prefix: str = ""):  # noqa: ANN202
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise _UnknownKey(prefix + str(key))
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in values.items()})


def _coerce(value, annotation, key: str):  # noqa: ANN001, ANN202
    """Check and convert one plain value to its field's type (ints to floats, lists to tuples)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise InputError(f"config key {key!r} must be a mapping, got {value!r}")
        return _build(annotation, value, f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config key {key!r} must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise InputError(f"config key {key!r} must have {len(args)} entries, got {value!r}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        items = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "1e-4" (no dot) as a string
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise InputError(f"config key {key!r} must be of type {annotation.__name__}, got {value!r}")
    return value


def _set_dotted(tree: dict, key: str, value) -> None:  # noqa: ANN001
    """tree["a"]["b"] = value for key "a.b", creating mappings on the way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """`["optim.learning_rate=3e-5", "data.kind=synthetic"]` → nested dict; values are read as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} must look like key.sub=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(text) if text.strip() else None)
    return tree


def merge(base: dict, extra: dict) -> dict:
    """`base` with `extra` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out

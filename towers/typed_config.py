"""Field type checks for the flat dataclass configs read from JSON (recipe, zip and codec configs): JSON
guarantees no types, so a config checks every field against its annotation when it is built."""
from __future__ import annotations

import dataclasses
import math
import types
import typing


def check_field_types(config, error: type[Exception] = ValueError) -> None:
    """Every field of the dataclass ``config`` holds its annotated type, and floats are finite; else
    ``error`` naming the field. ``int`` accepts no bool, ``float`` accepts an int."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        if not _is_instance(value, hint):
            raise error(f"{f.name} must be {_type_name(hint)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{f.name} must be finite, got {value!r}")


def _is_instance(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return isinstance(value, list) and all(_is_instance(v, args[0]) for v in value)
    if origin in (typing.Union, types.UnionType):
        return any(_is_instance(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")

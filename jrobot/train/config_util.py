"""Helpers for `configs/*.py`: policy configs as ml_collections with every field overridable.

`--config.policy.config.<field>=value` only works for fields present in the ConfigDict, and a field
whose value is None must be a typed placeholder to accept a value from the command line.
`dataclass_config(ACTConfig, chunk_size=30)` therefore lists every field of a policy's config dataclass
with its default (or the override), None defaults as placeholders of the annotated type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

_SIMPLE = (bool, int, float, str)


def _placeholder_type(tp: Any) -> type:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    for a in args:
        if a in _SIMPLE:
            return a
        if typing.get_origin(a) in (tuple, list) or a in (tuple, list):
            return tuple
        if typing.get_origin(a) is dict or a is dict:
            return dict
    return object


def dataclass_config(cls: type, **overrides: Any) -> ml_collections.ConfigDict:
    """A ConfigDict with every field of dataclass `cls` (defaults, then `overrides`)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            value = overrides[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise ValueError(f"{cls.__name__}.{f.name} has no default: pass it explicitly")
        if value is None:
            tp = hints[f.name]
            is_optional = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
            value = placeholder(_placeholder_type(tp) if is_optional else object)
        out[f.name] = value
    return ml_collections.ConfigDict(out)

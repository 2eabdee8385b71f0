"""Helpers for `configs/*.py`: policy configs as ml_collections with every field overridable.

`--config.policy.config.<field>=value` only works for fields present in the ConfigDict, and a field
whose value is None must be a typed placeholder to accept a value from the command line.
`dataclass_config(ACTConfig, chunk_size=30)` therefore lists every field of a policy's config dataclass
with its default (or the override), None defaults as placeholders of the annotated type.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from jrobot.errors import InputError

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


class ConfigError(ValueError, InputError):
    """A training config lacks a setting the trainer reads, or holds one it cannot use."""


def setting(config: Any, key: str) -> Any:
    """`config["a.b.c"]`, or a ConfigError naming the key, the closest keys there are, and the fix.

    The trainer has no defaults of its own: every setting comes from the config file (configs/common.py
    holds those all experiments share), so a config written by hand that lacks one fails here, once,
    with the key's name, instead of silently running with a value nobody chose.
    """
    node = config
    done: list[str] = []
    for part in key.split("."):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            near = difflib.get_close_matches(part, [str(k) for k in keys], n=3)
            where = ".".join(done) or "the top level"
            hint = f"; did you mean {', '.join('.'.join([*done, n]) for n in near)}?" if near else ""
            raise ConfigError(
                f"the config has no {key!r} (at {where}){hint} Every run setting comes from the config "
                "file: start from configs/common.py's run_config()"
            )
        node = node[part]
        done.append(part)
    return node


def as_plain_dict(value: Any) -> dict[str, Any]:
    """A ConfigDict section (or a plain mapping, or None) as a plain dict."""
    if value is None:
        return {}
    return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """`get_config()` of a `configs/<experiment>.py` file, outside `jrobot.train`'s flag parsing.

    The folder above the file's folder goes on `sys.path` first, so `from configs import common`
    works as it does for `python -m jrobot.train` run from the repository root.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    root = str(path.resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"jrobot_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise AttributeError(f"{path}: a config file defines get_config()")
    return module.get_config()


def check_config_file(argv: Sequence[str]) -> Path:
    """The `--config` file of a command line, checked before the flag parser loads it; its package root
    (and the working folder) go on sys.path, so a config's `from configs import common` works from any
    folder and from the console script, as for `python -m jrobot.train` in the repository root."""
    value = None
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith("--config="):
            value = a.split("=", 1)[1]
    if value is None:
        raise ConfigError("missing required flag --config (a configs/<name>.py file)")
    path = Path(value).expanduser()
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        hint = f"; {path.parent} has {', '.join(near)}" if near else ""
        raise ConfigError(f"--config {value}: no such config file{hint}")
    if path.suffix != ".py":
        raise ConfigError(f"--config {value}: a config is a Python file with get_config() (configs/*.py)")
    root = path.resolve().parent
    if (root / "__init__.py").is_file():
        root = root.parent
    for p in (str(root), str(Path.cwd())):
        if p not in sys.path:
            sys.path.insert(0, p)
    return path


def check_config_overrides(argv: Sequence[str], config: Path) -> None:
    """Load the config once to name what is wrong with it: a file that does not load, or an override
    (`--config.<key>=...`) of a key it does not have, with the closest keys it does have."""
    try:
        keys = config_keys(load_config_file(config))
    except Exception as e:  # the config file itself raised (syntax, imports, get_config)
        raise ConfigError(f"--config {config}: it does not load: {type(e).__name__}: {e}") from e
    for a in argv:
        if not a.startswith("--config."):
            continue
        key = a.removeprefix("--config.").split("=", 1)[0]
        if key not in keys:
            near = difflib.get_close_matches(key, sorted(keys), n=3)
            if near:
                hint = "; did you mean " + ", ".join(f"--config.{n}" for n in near) + "?"
            else:
                parent = key.rpartition(".")[0]
                level = sorted(k for k in keys if k.rpartition(".")[0] == parent)
                hint = f"; its keys{' under ' + parent if parent else ''}: {', '.join(level)}"
            raise ConfigError(f"unknown config key --config.{key} in {config}{hint}")


def config_keys(node: Any, prefix: str = "") -> dict[str, str]:
    """Every dotted key of a config (sections too) and the type name of its value."""
    out: dict[str, str] = {}
    for k in node:
        v = node[k]
        key = f"{prefix}{k}"
        if hasattr(v, "keys"):
            out.update(config_keys(v, key + "."))
        out[key] = type(v).__name__
    return out

"""Dotted command-line flags in LeRobot's (draccus') style, bound to dataclasses.

    python -m jrobot.teleoperate --robot.type=so101_follower --robot.port=/dev/ttyACM0 \\
        --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --fps=30 --resume=true

- `--a.b.c=value` and `--a.b.c value` both work; a bare `--flag` means true; the last repeat wins.
- Values are kept as text until the target field's type is known: `str` and `Path` fields take the
  text as is (so `--robot.id=007` stays "007"), everything else is parsed as YAML, as draccus does
  (so `{front: {type: opencv, ...}}`, `[1, 2]`, `true`, `null`, `1e-3` all work).
- Booleans accept true/false, yes/no, on/off, 1/0 in any case.
- Nested fields can also be set one by one: `--robot.cameras.front.fps=15` overrides that entry of a
  `--robot.cameras` mapping.
- Unknown flags are errors that suggest the closest valid flag; bad values name the flag.

`Binder.choice` picks a dataclass from a `type` flag (`--robot.type=so101_follower`), which is how
`record` and the hardware tools select robots and teleoperators; `Binder.finish` then rejects flags
that nothing used.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_NONE = {"null", "none", "~", ""}


class CliError(ValueError):
    """A command-line flag is unknown, missing or has a bad value."""


def parse_flags(argv: Sequence[str]) -> dict[str, str]:
    """`["--a.b=1", "--c", "x", "--d"]` -> `{"a.b": "1", "c": "x", "d": "true"}` (values stay text)."""
    out: dict[str, str] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise CliError(f"unexpected argument {arg!r}: flags look like --name=value")
        body = arg[2:]
        if "=" in body:
            key, value = body.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = body, argv[i + 1]
            i += 1
        else:
            key, value = body, "true"
        key = key.replace("-", "_") if key.count(".") == 0 and "-" in key else key
        if not key:
            raise CliError(f"empty flag name in {arg!r}")
        out[key] = value
        i += 1
    return out


def parse_value(text: str) -> Any:
    """YAML scalar/flow value as draccus parses it; text that is not valid YAML stays text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class Binder:
    """Binds one command line's flags to dataclasses and reports the flags nobody used.

    binder = Binder.from_argv(sys.argv[1:])
    robot = binder.choice(ROBOT_TYPES, "robot")
    opts = binder.build(Options)
    binder.finish()  # CliError for unknown flags, with the closest valid one
    """

    def __init__(self, flags: Mapping[str, str]) -> None:
        self.flags = dict(flags)
        self.consumed: set[str] = set()
        self.known: set[str] = set()

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Binder:
        return cls(parse_flags(argv))

    def choice(self, registry: Mapping[str, type[T]], prefix: str, *, required: bool = True) -> T | None:
        """Build the dataclass that `--<prefix>.type` selects from `registry` (None if absent and optional)."""
        type_key = f"{prefix}.type"
        if type_key not in self.flags:
            if not required and not self.has(prefix):
                return None
            raise CliError(f"missing --{type_key} (one of: {', '.join(registry)})")
        name = self.flags[type_key]
        if name not in registry:
            close = difflib.get_close_matches(name, list(registry), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CliError(f"--{type_key}={name!r} is not a known type (known: {', '.join(registry)}){hint}")
        return self.build(registry[name], prefix)

    def finish(self) -> None:
        """Raise CliError for any flag that no `build`/`choice` call consumed."""
        for key in self.flags:
            if key in self.consumed:
                continue
            close = difflib.get_close_matches(key, sorted(self.known), n=1)
            hint = f"; did you mean --{close[0]}?" if close else ""
            raise CliError(f"unknown flag --{key}{hint}")

    def subtree(self, prefix: str) -> tuple[str | None, dict[str, str]]:
        """(raw value at `prefix`, {child key: raw value}) for keys under `prefix`."""
        raw = self.flags.get(prefix)
        if raw is not None:
            self.consumed.add(prefix)
        kids = {}
        for k, v in self.flags.items():
            if k.startswith(prefix + "."):
                kids[k[len(prefix) + 1 :]] = v
        return raw, kids

    def has(self, prefix: str) -> bool:
        return prefix in self.flags or any(k.startswith(prefix + ".") for k in self.flags)

    def build(self, cls: type[T], prefix: str = "", base: Mapping[str, Any] | None = None) -> T:
        """Instantiate dataclass `cls` from flags under `prefix` (plus values already in `base`)."""
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            key = f"{prefix}.{f.name}" if prefix else f.name
            self.known.add(key)
            if self.has(key):
                kwargs[f.name] = self.value(hints[f.name], key, (base or {}).get(f.name))
            elif base is not None and f.name in base:
                kwargs[f.name] = coerce(base[f.name], hints[f.name], key)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise CliError(f"missing required flag --{key}")
        if base is not None:
            unknown = [k for k in base if k not in {f.name for f in dataclasses.fields(cls)}]
            if unknown:
                raise CliError(
                    f"--{prefix}: unknown field(s) {unknown} for {cls.__name__}; valid: {field_names(cls)}"
                )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise CliError(f"--{prefix or cls.__name__}: {e}") from e

    def value(self, tp: Any, key: str, base: Any = None) -> Any:
        raw, kids = self.subtree(key)
        target = _strip_optional(tp)
        if dataclasses.is_dataclass(target) and isinstance(target, type):
            mapping = dict(base or {})
            if raw is not None:
                parsed = parse_value(raw)
                if not isinstance(parsed, Mapping):
                    raise CliError(f"--{key}: expected a mapping like {{a: 1}}, got {raw!r}")
                mapping.update(parsed)
            return self.build(target, key, mapping) if kids or mapping else self.build(target, key)
        origin = typing.get_origin(target)
        if origin in (dict, Mapping) or target in (dict,):
            args = typing.get_args(target) or (str, Any)
            mapping = dict(base or {})
            if raw is not None:
                parsed = parse_value(raw)
                if parsed is None:
                    mapping = {}
                elif not isinstance(parsed, Mapping):
                    raise CliError(f"--{key}: expected a mapping like {{name: {{...}}}}, got {raw!r}")
                else:
                    mapping.update(parsed)
            child_names = {k.split(".", 1)[0] for k in kids}
            out = {}
            for name in list(mapping) + sorted(child_names - set(mapping)):
                sub = f"{key}.{name}"
                val_tp = args[1]
                if self.has(sub) and dataclasses.is_dataclass(_strip_optional(val_tp)):
                    entry = mapping.get(name)
                    if entry is not None and not isinstance(entry, Mapping):
                        raise CliError(f"--{sub}: expected a mapping, got {entry!r}")
                    out[str(name)] = self.build(_strip_optional(val_tp), sub, dict(entry or {}))
                elif self.has(sub):
                    out[str(name)] = self.value(val_tp, sub, mapping.get(name))
                else:
                    out[str(name)] = coerce(mapping[name], val_tp, sub)
            return out
        if kids:
            raise CliError(f"--{key}.{next(iter(kids))}: {key} has no sub-fields")
        if raw is None:
            return base
        return coerce_text(raw, tp, key)


def _strip_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def coerce_text(raw: str, tp: Any, key: str) -> Any:
    """Flag text -> value of type `tp` (text kept verbatim for str/Path)."""
    if tp in (str, Path):
        return tp(raw)
    if _is_union(tp):
        args = typing.get_args(tp)
        if type(None) in args and raw.strip().lower() in _NONE:
            return None
        if str in args and not any(
            a in (int, float, bool) or typing.get_origin(a) in (dict, list) for a in args
        ):
            return raw
    return coerce(parse_value(raw), tp, key)


def coerce(value: Any, tp: Any, key: str) -> Any:
    """A YAML-parsed value -> type `tp`, with an error naming the flag."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        exact = [a for a in args if a is not type(None) and _matches(value, a)]
        for a in exact + [a for a in args if a is not type(None) and a not in exact]:
            try:
                return coerce(value, a, key)
            except CliError:
                continue
        raise CliError(f"--{key}: {value!r} is not a valid {_type_name(tp)}")
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise CliError(f"--{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise CliError(f"--{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise CliError(f"--{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise CliError(f"--{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise CliError(f"--{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, Mapping | list):
            raise CliError(f"--{key}: expected text, got {value!r}")
        return "" if value is None else str(value)
    if tp is Path:
        if value is None or isinstance(value, Mapping | list):
            raise CliError(f"--{key}: expected a path, got {value!r}")
        return Path(str(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise CliError(f"--{key}: expected a mapping, got {value!r}")
        ktp, vtp = typing.get_args(tp) or (str, Any)
        return {coerce(k, ktp, key): coerce(v, vtp, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise CliError(f"--{key}: expected a list like [a, b], got {value!r}")
        (etp, *_) = typing.get_args(tp) or (Any,)
        return [coerce(v, etp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise CliError(f"--{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return Binder({}).build(tp, key, dict(value))
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise CliError(f"--{key}: cannot convert {value!r} to {_type_name(tp)}")


def _matches(value: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(value, float)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(tp) in (dict, Mapping):
        return isinstance(value, Mapping)
    return isinstance(tp, type) and isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def build_dataclass(cls: type[T], flags: Mapping[str, str], prefix: str = "") -> T:
    """Instantiate `cls` from parsed flags, rejecting flags it does not use."""
    binder = Binder(flags)
    obj = binder.build(cls, prefix)
    binder.finish()
    return obj


def run_tool(main: Any, argv: Sequence[str] | None = None, usage: str = "") -> int:
    """Run a tool's `main(argv)`; turn expected failures into a one-line message and an exit code.

    Bad flags exit 2 (with `usage`), hardware and data errors exit 1 with their message (the
    traceback only with JROBOT_DEBUG=1), Ctrl-C exits 130. `--help` prints `usage`.
    """
    import os
    import sys
    import traceback

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        return 0
    try:
        rc = main(argv)
        return int(rc or 0)
    except CliError as e:
        print(f"error: {e}\n\n{usage}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ConnectionError, RuntimeError, ValueError, OSError, EOFError, TimeoutError) as e:
        if os.environ.get("JROBOT_DEBUG"):
            traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

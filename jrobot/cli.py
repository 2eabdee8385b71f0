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

The data tools and `jrobot.export` use the same grammar, with three additions, so that every command
has one flag syntax, one error path (`run_tool`) and a generated `--help`:

    python -m data_tools.edit split data/pick_cube --out splits --splits train=0-39 val=40-49

- Positional arguments: a field declared with `positional()` takes a bare argument, in field order; a
  list-typed one takes all that are left (`edit merge A B C`). A bare boolean flag may come right
  before one (`inspect --json DATASET`): its next argument is its value only if it reads as a boolean.
- Lists: a list-typed field takes every argument after its flag up to the next flag (`--features a b`),
  or one YAML list (`--features "[a, b]"`).
- Subcommands: `Binder.subcommand` picks an options class by the first argument (`edit delete ...`),
  with the closest name suggested on a typo. `exactly_one` checks flags that exclude each other.

`flag()`/`positional()` attach `help` text to fields; `usage` and `commands_usage` turn an options
class (or one per subcommand) into the `--help` text that `run_tool` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import textwrap
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from jrobot.errors import PATH_ERRORS, InputError

T = TypeVar("T")
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}
_NONE = {"null", "none", "~", ""}


class CliError(ValueError, InputError):
    """A command-line flag is unknown, missing or has a bad value."""


def parse_flags(argv: Sequence[str]) -> dict[str, str]:
    """`["--a.b=1", "--c", "x", "--d"]` -> `{"a.b": "1", "c": "x", "d": "true"}` (values stay text).

    For commands without positional arguments: any bare argument that is no flag's value is an error.
    """
    tokens = _tokenize(argv)
    loose = tokens.loose()
    if loose:
        raise CliError(f"unexpected argument {loose[0][1]!r}: flags look like --name=value")
    return tokens.flags


@dataclasses.dataclass
class _Tokens:
    """A command line split into flags and bare arguments, each bare argument with its argv index.

    Which bare arguments belong to a flag is only known once the flag's field type is: a list flag
    takes all that follow it, a boolean one may give its value back, a scalar takes one.
    """

    flags: dict[str, str] = dataclasses.field(default_factory=dict)
    leading: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # before the first flag
    tail: dict[str, list[tuple[int, str]]] = dataclasses.field(default_factory=dict)  # after a value
    detached: dict[str, int] = dataclasses.field(default_factory=dict)  # `--k v`: argv index of v
    bare: set[str] = dataclasses.field(default_factory=set)  # `--k` alone
    spelled: dict[str, str] = dataclasses.field(default_factory=dict)  # key as typed: `max-episodes`

    def loose(self, took_tail: Collection[str] = ()) -> list[tuple[int, str]]:
        out = list(self.leading)
        for key, tail in self.tail.items():
            if key not in took_tail:
                out += tail
        return sorted(out)


def _tokenize(argv: Sequence[str]) -> _Tokens:
    tok = _Tokens()
    current: str | None = None
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            raise CliError(f"unexpected argument {arg!r}: flags look like --name=value")
        if not arg.startswith("--"):
            (tok.tail[current] if current is not None else tok.leading).append((i, arg))
            i += 1
            continue
        body = arg[2:]
        detached = None
        if "=" in body:
            typed, value = body.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            typed, value, detached = body, argv[i + 1], i + 1
            i += 1
        else:
            typed, value = body, "true"
        key = typed.replace("-", "_") if typed.count(".") == 0 and "-" in typed else typed
        if not key:
            raise CliError(f"empty flag name in {arg!r}")
        if key in tok.flags:  # the last repeat wins; what followed the earlier one is left over
            tok.leading += tok.tail.pop(key)
            tok.detached.pop(key, None)
            tok.bare.discard(key)
        tok.flags[key] = value
        tok.spelled[key] = typed
        tok.tail[key] = []
        if detached is not None:
            tok.detached[key] = detached
        elif "=" not in body:
            tok.bare.add(key)
        current = key
        i += 1
    return tok


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
        self._tokens = _Tokens()  # where each flag's text came from (from_argv fills it)
        self._took_tail: set[str] = set()  # list flags that took the arguments after them
        self._given_back: list[tuple[int, str]] = []  # `--json DATASET`: DATASET is no boolean
        self._bound: set[int] = set()  # argv indices used as the subcommand or a positional field
        self._takes_args = False  # set once a subcommand or positional fields are bound

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Binder:
        """A binder for a command line; bare arguments wait for `subcommand`/`positional()` fields."""
        tokens = _tokenize(argv)
        binder = cls(tokens.flags)
        binder._tokens = tokens
        return binder

    def subcommand(self, registry: Mapping[str, T], what: str = "command") -> tuple[str, T]:
        """(name, entry) of `registry` named by the first argument (`edit delete ...`).

        The name must come first, before any flag, as it decides which flags exist.
        """
        self._takes_args = True
        lead = self._tokens.leading
        if not lead or lead[0][0] != 0:
            raise CliError(f"missing {what} (one of: {', '.join(registry)})")
        index, name = lead[0]
        if name not in registry:
            close = difflib.get_close_matches(name, list(registry), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CliError(f"unknown {what} {name!r} (one of: {', '.join(registry)}){hint}")
        self._bound.add(index)
        return name, registry[name]

    def loose(self) -> list[tuple[int, str]]:
        """Bare arguments nothing has used yet, as (argv index, text), in command-line order."""
        out = self._tokens.loose(self._took_tail) + self._given_back
        return sorted(a for a in out if a[0] not in self._bound)

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
        """Raise CliError for any flag that no `build`/`choice` call consumed, or a bare argument left."""
        self._check_unknown()
        loose = self.loose()
        if loose:
            raise CliError(f"unexpected argument {loose[0][1]!r}: flags look like --name=value")

    def _check_unknown(self) -> None:
        for key in self.flags:
            if key in self.consumed:
                continue
            shown = self._shown(key)
            close = difflib.get_close_matches(key, sorted(self.known), n=1)
            hint = ""
            if close:  # suggest in the spelling the user types: --max-episodes, not --max_episodes
                hint = close[0].replace("_", "-") if "-" in shown and "." not in close[0] else close[0]
                hint = f"; did you mean --{hint}?"
            raise CliError(f"unknown flag --{shown}{hint}")

    def _shown(self, key: str) -> str:
        return self._tokens.spelled.get(key, key)

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
        args = (
            [] if prefix else [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("positional")]
        )
        if args:
            self._takes_args = True
        for f in dataclasses.fields(cls):
            if not f.init or f in args:
                continue
            key = f"{prefix}.{f.name}" if prefix else f.name
            self.known.add(key)
            if self.has(key):
                kwargs[f.name] = self.value(hints[f.name], key, (base or {}).get(f.name))
            elif base is not None and f.name in base:
                kwargs[f.name] = coerce(base[f.name], hints[f.name], key)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                # a misspelt required flag: name the typo rather than only the missing flag
                typo = difflib.get_close_matches(key, [k for k in self.flags if k not in self.consumed], n=1)
                hint = f" (unknown flag --{self._shown(typo[0])}; did you mean --{key}?)" if typo else ""
                raise CliError(f"missing required flag --{key}{hint}")
        if args:  # after the flags, which decide how many bare arguments are theirs
            kwargs.update(self._bind_positionals(args, hints))
        if base is not None:
            unknown = [k for k in base if k not in {f.name for f in dataclasses.fields(cls)}]
            if unknown:
                raise CliError(
                    f"--{prefix}: unknown field(s) {unknown} for {cls.__name__}; valid: {field_names(cls)}"
                )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise CliError(f"--{prefix}: {e}" if prefix else str(e)) from e

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
        shown = self._shown(key)
        if _is_list(target):
            return self._list_value(tp, key, raw)
        tokens = self._tokens
        if (
            target is bool
            and self._takes_args
            and key in tokens.detached
            and raw.strip().lower() not in _TRUE | _FALSE
        ):
            self._given_back.append((tokens.detached[key], raw))
            return True
        return coerce_text(raw, tp, shown)

    def _list_value(self, tp: Any, key: str, raw: str) -> Any:
        """`--k a b` -> [a, b]; `--k a` -> [a]; `--k "[a, b]"` -> [a, b] (YAML); `--k null` -> None."""
        shown = self._shown(key)
        if key in self._tokens.bare:
            raise CliError(f"--{shown}: expected one or more values")
        self._took_tail.add(key)
        values = [raw, *(text for _, text in self._tokens.tail.get(key, []))]
        if len(values) == 1 and (
            raw.lstrip().startswith("[") or (_is_union(tp) and raw.strip().lower() in _NONE)
        ):
            return coerce_text(raw, tp, shown)
        (etp, *_) = typing.get_args(_strip_optional(tp)) or (Any,)
        return [coerce_text(v, etp, f"{shown}[{i}]") for i, v in enumerate(values)]

    def _bind_positionals(self, fields: list[dataclasses.Field], hints: Mapping[str, Any]) -> dict[str, Any]:
        """Fill `positional()` fields from the bare arguments left, in order; the last may be a list."""
        pool = self.loose()
        names = [_arg_name(f) + (" ..." if _is_list(_strip_optional(hints[f.name])) else "") for f in fields]
        out: dict[str, Any] = {}
        for n, f in enumerate(fields):
            tp = hints[f.name]
            many = _is_list(_strip_optional(tp))
            if many and n != len(fields) - 1:
                raise TypeError(f"{f.name}: only the last positional field can be a list")
            taken, pool = (pool, []) if many else (pool[:1], pool[1:])
            if not taken:
                self._check_unknown()  # a typo'd flag may have taken the argument as its value
                raise CliError(f"missing argument {_arg_name(f)}")
            self._bound.update(i for i, _ in taken)
            texts = [text for _, text in taken]
            try:
                if many:
                    (etp, *_) = typing.get_args(_strip_optional(tp)) or (Any,)
                    out[f.name] = [coerce_text(t, etp, f.name) for t in texts]
                else:
                    out[f.name] = coerce_text(texts[0], tp, f.name)
            except CliError as e:
                raise CliError(f"{_arg_name(f)}: {str(e).split(': ', 1)[-1]}") from None
        if pool:
            raise CliError(f"unexpected argument {pool[0][1]!r}: this command takes {' '.join(names)}")
        return out


def _strip_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple, Sequence) or tp in (list, tuple)


def _arg_name(f: dataclasses.Field) -> str:
    return f.metadata.get("metavar") or f.name.upper()


def coerce_text(raw: str, tp: Any, key: str) -> Any:
    """Flag text -> value of type `tp` (text kept verbatim for str/Path)."""
    if tp in (str, Path):
        return tp(raw)
    if typing.get_origin(tp) is typing.Literal:  # choices match the text as typed ("on" stays "on")
        for choice in typing.get_args(tp):
            if str(choice) == raw:
                return choice
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
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        names = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CliError(f"--{key}: {value!r} is not one of {', '.join(names)}{hint}")
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


def flag(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    metavar: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field for a `--flag`, with the `help` text (and value placeholder) `usage` shows."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"help": help, "metavar": metavar}
    )


def positional(*, help: str = "", metavar: str | None = None) -> Any:
    """A required dataclass field filled from a bare argument (`inspect DATASET`) rather than a flag."""
    return dataclasses.field(metadata={"positional": True, "help": help, "metavar": metavar})


def exactly_one(opts: Any, *names: str, required: bool = True) -> str | None:
    """The one of the fields `names` that is set (not None/False) on `opts`: for exclusive flags.

    Flags are named as users type them in the data tools (`--from-lerobot`).
    """
    given = [n for n in names if getattr(opts, n) not in (None, False)]
    shown = [f"--{n.replace('_', '-')}" for n in names]
    if len(given) > 1:
        raise CliError(" and ".join(f"--{n.replace('_', '-')}" for n in given) + " cannot be used together")
    if not given:
        if required:
            raise CliError(f"give one of {', '.join(shown[:-1])} or {shown[-1]}")
        return None
    return given[0]


def _metavar(tp: Any) -> str:
    """The placeholder `usage` shows for a flag's value: N, X, PATH, TEXT, {a,b}, TEXT [TEXT ...]."""
    tp = _strip_optional(tp)
    if typing.get_origin(tp) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    if _is_list(tp):
        (etp, *_) = typing.get_args(tp) or (str,)
        return f"{_metavar(etp)} [{_metavar(etp)} ...]"
    return {bool: "", int: "N", float: "X", Path: "PATH"}.get(tp, "TEXT")


def _help_rows(cls: type) -> tuple[str, list[tuple[str, str]]]:
    """(synopsis of the arguments, [(argument or flag, help)]) with positionals, required flags first."""
    hints = typing.get_type_hints(cls)
    args, required, optional = [], [], []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, text = hints[f.name], f.metadata.get("help", "")
        if f.metadata.get("positional"):
            name = _arg_name(f) + (f" [{_arg_name(f)} ...]" if _is_list(_strip_optional(tp)) else "")
            args.append((name, text))
            continue
        name = f"--{f.name.replace('_', '-')}"
        meta = f.metadata.get("metavar") or _metavar(tp)
        if f.metadata.get("metavar") and _is_list(_strip_optional(tp)):
            meta = f"{meta} [{meta} ...]"
        name = f"{name} {meta}" if meta else name
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append((name, f"{text} (required)".strip()))
        elif f.default not in (None, dataclasses.MISSING, "") and not isinstance(f.default, bool):
            optional.append((name, f"{text} (default: {f.default})".strip()))
        else:
            optional.append((name, text))
    synopsis = " ".join([n for n, _ in args + required] + (["[flags]"] if optional else []))
    return synopsis, args + required + optional


def _format_rows(rows: list[tuple[str, str]], indent: str) -> list[str]:
    width = min(28, max((len(n) for n, _ in rows), default=0) + 2)
    out = []
    for name, text in rows:
        lines = textwrap.wrap(text, 100 - len(indent) - width) or [""]
        if len(name) + 2 > width and text:
            out.append(f"{indent}{name}")
        else:
            out.append(f"{indent}{name.ljust(width)}{lines.pop(0)}".rstrip())
        out += [f"{indent}{' ' * width}{line}" for line in lines]
    return out


def usage(prog: str, cls: type, doc: str = "") -> str:
    """`--help` text for a command: synopsis, `doc` (the module docstring), then each argument and flag.

    Generated from the options dataclass (`help` metadata of `flag()`/`positional()`), so the help
    cannot drift from what the command accepts.
    """
    synopsis, rows = _help_rows(cls)
    lines = [f"usage: {prog} {synopsis}".rstrip()]
    if doc.strip():
        lines += ["", doc.strip("\n")]
    return "\n".join([*lines, "", "arguments:", *_format_rows(rows, "  ")])


def commands_usage(prog: str, commands: Mapping[str, type], doc: str = "") -> str:
    """`--help` text for a command with subcommands: each one's synopsis, summary (its class docstring)
    and flags."""
    lines = [f"usage: {prog} {{{','.join(commands)}}} ..."]
    if doc.strip():
        lines += ["", doc.strip("\n")]
    for name, cls in commands.items():
        synopsis, rows = _help_rows(cls)
        summary = (cls.__doc__ or "").strip().split("\n")[0]
        lines += ["", f"{prog} {name} {synopsis}".rstrip(), f"    {summary}", *_format_rows(rows, "    ")]
    return "\n".join(lines)


def run_tool(
    main: Any,
    argv: Sequence[str] | None = None,
    usage: str | Callable[[Sequence[str]], str] = "",
    input_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run a tool's `main(argv)`; end every error a user can cause with one message and exit status 2.

    A bad flag (`CliError`) prints its line and where the flags are listed; an `InputError` (a wrong
    path, an incomplete dataset/bundle/shard set/checkpoint, an unknown config key, a busy or missing
    port) or the system's path errors print their message; both exit 2. Other expected failures while
    working (a connection lost, a motor fault, a timeout) exit 1 with their message. The traceback of
    any of these only with `--debug` or JROBOT_DEBUG=1; anything else is a bug and keeps its traceback.
    Ctrl-C exits 130. `--help` prints `usage`; a callable `usage` gets the arguments, so a command with
    subcommands can show the help of the one named. `input_errors` adds a tool's own: a converter's
    ValueError says what in the input it cannot convert.

    A tool run here is a command-line process, so a stop signal has a deadline
    (`jrobot.hw.safety.exit_deadline`), and once the stop has unwound (torque off, dataset closed)
    the process ends without the interpreter's slow teardown (`exit_after_stop`).
    """
    import os
    import sys
    import traceback

    from jrobot.hw import safety

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("JROBOT_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    text = usage(argv) if callable(usage) else usage
    if any(a in ("-h", "--help") for a in argv):
        print(text)
        return 0
    safety.exit_deadline()

    def fail(message: str, rc: int) -> int:
        if debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return rc

    try:
        rc = main(argv)
        return int(rc or 0)
    except CliError as e:
        hint = "--help lists the flags" if text else ""
        return fail(f"{e}" + (f"\n({hint})" if hint else ""), 2)
    except (InputError, *input_errors) as e:
        return fail(str(e), 2)
    except PATH_ERRORS as e:
        return fail(f"{type(e).__name__}: {e}", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        safety.exit_after_stop(130)
        return 130
    except SystemExit as e:
        if safety.stop_requested() is not None and isinstance(e.code, int):
            safety.exit_after_stop(e.code)
        raise
    except (ConnectionError, RuntimeError, ValueError, OSError, EOFError, TimeoutError) as e:
        return fail(f"{type(e).__name__}: {e}", 1)

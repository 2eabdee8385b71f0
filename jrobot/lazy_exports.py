"""Package-level names imported on first use (PEP 562), so `import jrobot.data` stays cheap.

A package lists `{name: module}` and binds `__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)`:
`from jrobot.shards import ShardSet` then imports `jrobot.shards.format` only when asked, and a
pipeline worker that needs one reader does not pay for the writer and builder imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`, resolving each name in `exports` from its module once."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__

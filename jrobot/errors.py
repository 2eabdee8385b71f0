"""The mark of an error a user caused and can fix, shared by every layer without importing the CLI.

A missing or wrong file or folder, a dataset, bundle, shard set, checkpoint or config that is
incomplete or of another version, a busy or missing port: the classes that say so (`DatasetError`,
`BundleError`, `ShardError`, `ConfigError`, `PortNotFoundError`, ...) also derive from `InputError`, so
every command ends them the same way (`jrobot.cli.run_tool`): their message as one line naming the
path, key or value, exit status 2, and the traceback only with `--debug` or `JROBOT_DEBUG=1`.
Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Mixin: this error's message tells the user what to fix (commands exit 2 with it)."""


# the operating system's own "that path is wrong" errors, ended as InputError is
PATH_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
)

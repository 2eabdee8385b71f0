"""jrobot: a JAX/Flax robot-learning stack for low-cost arms (SO-101), interoperable with LeRobot.

The stages of the data flow are the subpackages (`hw`, `sim`, `recording`, `data`, `shards`, `pipeline`,
`policies`, `train`, `runtime`, `serving`); the commands that drive them are thin modules in
`jrobot.commands`. `python -m jrobot.<command>` (e.g. `python -m jrobot.record`) runs
`jrobot.commands.<command>`: the finder below resolves those names, so the commands keep the short
names they had before they moved into one package, and the top level holds stages, not commands.
"""

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

_COMMANDS = Path(__file__).parent / "commands"


class _CommandNames:
    """Meta-path finder: `jrobot.<name>` is `jrobot/commands/<name>.py` when no module of that name
    exists (it is asked last). Importing such a name gives a second copy of the command module; import
    `jrobot.commands.<name>` in code, and use the short name with `python -m`."""

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None):
        package, _, name = fullname.rpartition(".")
        file = _COMMANDS / f"{name}.py"
        if package != __name__ or not name.isidentifier() or name.startswith("_") or not file.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, file)


if not any(isinstance(f, _CommandNames) for f in sys.meta_path):
    sys.meta_path.append(_CommandNames())

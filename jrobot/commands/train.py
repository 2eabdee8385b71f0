"""`python -m jrobot.train --config configs/<name>.py --workdir DIR [--config.key=value ...]`.

    python -m jrobot.train --config configs/act_so101_sim.py --workdir runs/act
    python -m jrobot.train --config configs/act_so101_sim.py --workdir runs/act --config.batch_size=16

Flags:
  --config FILE              a Python config file with get_config() (one per experiment, configs/*.py)
  --config.<key>=VALUE       override any setting of that config (e.g. --config.optimizer.lr=3e-5)
  --workdir DIR              the run's folder: checkpoints, metrics, wandb; an existing run resumes
  --coordinator_address H:P, --num_processes N, --process_id I
                             multi-host: one process per host with the same flags plus these
  --distributed              or let jax.distributed.initialize() discover a TPU pod / SLURM allocation
  --debug                    show the traceback of an error

A misspelt config key is named with the closest keys the config has; a config file that is missing or
does not load, a shard folder that is not a finished shard set and a run folder of another config are
each one line naming the path or key.
"""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Sequence

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jrobot.cli import CliError, run_tool
from jrobot.train.config_util import check_config_file, check_config_overrides

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, wandb.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host runs.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
_PID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
_DIST = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection.")

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    config = check_config_file(argv)
    check_config_overrides(argv, config)
    try:
        rest = flags.FLAGS(["jrobot-train", *argv])
    except flags.Error as e:
        raise CliError(_flag_error(str(e))) from e
    if len(rest) > 1:
        raise CliError(f"unexpected argument {rest[1]!r}: flags look like --name=value")
    if _WORKDIR.value is None:
        raise CliError("missing required flag --workdir (the run's folder)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/grain are chatty at INFO
    logging.getLogger("jax").setLevel(logging.WARNING)
    from jrobot.train import sharding

    sharding.initialize_distributed(
        coordinator=_COORD.value, num_processes=_NPROC.value, process_id=_PID.value, auto=_DIST.value
    )
    from jrobot.train.trainer import train

    metrics = train(_CONFIG.value, _WORKDIR.value)
    if metrics:
        logging.getLogger("jrobot.train").info("done: %s", {k: round(v, 5) for k, v in metrics.items()})
    return 0


def _flag_error(message: str) -> str:
    """absl's message about a flag, as one line naming the flag (and the closest flag for a typo)."""
    first = message.strip().splitlines()[0] if message.strip() else message
    if "Unknown command line flag" in first and "'" in first:
        name = first.split("'")[1]
        near = difflib.get_close_matches(name, sorted(flags.FLAGS), n=1)
        return f"unknown flag --{name}" + (f"; did you mean --{near[0]}?" if near else "")
    return first


def launch() -> None:
    sys.modules["__main__"].__doc__ = __doc__
    sys.exit(run_tool(main, usage=USAGE))


if __name__ == "__main__":
    launch()

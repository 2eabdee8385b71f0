"""`python -m jrobot.train --config configs/<name>.py --workdir DIR [--config.key=value ...]`.

Multi-host: run one process per host with the same flags plus `--coordinator_address=host:port
--num_processes=N --process_id=i` (or let `jax.distributed.initialize()` discover a TPU pod / SLURM
allocation with `--distributed`).
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, wandb.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host runs.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
_PID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
_DIST = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
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


def launch() -> None:
    sys.modules["__main__"].__doc__ = __doc__  # absl's --help shows __main__'s docstring: this one
    app.run(main)


if __name__ == "__main__":
    launch()

"""orbax checkpoints of a training run: train state, data-iterator state and run metadata together.

One checkpoint step holds three items:
  state  the train state pytree (params, optimizer state, step, RNG, EMA), sharded as in training
  data   the grain iterator state of every process (`process_<i>-of-<n>.json`, grain's own handler)
  meta   JSON: the config, the policy spec and the dataset stats, so export needs nothing else

Saves are asynchronous (training continues while arrays are written), keep the last N, and are
atomic: orbax writes into a temporary directory and renames it when complete, so a run killed at
any moment restarts from the newest complete step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp


class _FrozenIteratorState:
    """The iterator state captured when `save` is called, so an async save cannot see a later state."""

    def __init__(self, state: dict[str, Any]):
        self._state = json.dumps(state, indent=2).encode()

    def get_state(self) -> bytes:
        return self._state


class Checkpointer:
    def __init__(
        self, directory: str | Path, *, keep: int = 3, save_every: int = 1000, async_save: bool = True
    ):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=1,  # the trainer decides when to save
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.save_every = save_every
        self._mngr = ocp.CheckpointManager(self.directory, options=options)

    @property
    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, data_state: dict[str, Any] | None, meta: dict[str, Any]) -> None:
        items = {
            "state": ocp.args.StandardSave(state),
            "meta": ocp.args.JsonSave(meta),
        }
        if data_state is not None:
            items["data"] = grain.checkpoint.CheckpointSave(_FrozenIteratorState(data_state))
        self._mngr.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self, step: int | None, abstract_state: Any, data_iterator: Any | None = None
    ) -> tuple[Any, dict]:
        """Restore `state` (into the shardings of `abstract_state`) and, if given, the data iterator."""
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self._mngr.restore(step, args=ocp.args.Composite(**items))
        return restored["state"], restored["meta"]

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore_state(self, step: int | None = None, abstract_state: Any | None = None) -> Any:
        """Restore only the train state (export does this; it needs no data pipeline)."""
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        arg = (
            ocp.args.StandardRestore(abstract_state)
            if abstract_state is not None
            else ocp.args.StandardRestore()
        )
        return self._mngr.restore(step, args=ocp.args.Composite(state=arg))["state"]

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()

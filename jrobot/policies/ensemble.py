"""Turning action chunks into one action per control step: ACT's temporal ensembler, and the schedule of
chunks by timestep that LeRobot's action queue and its async inference's merge rules are cases of.

numpy only (no jax/flax): the real-time runtime imports this next to an exported inference function.

`TemporalEnsembler` reproduces LeRobot's `ACTTemporalEnsembler` (float32, same online update): the
action executed for a future timestep is the weighted mean of every prediction made for it, with
weights `w_i = exp(-coeff * i)` where i = 0 is the OLDEST prediction (coeff > 0 favours older ones,
0 is uniform, < 0 favours newer ones). The policy is queried every step (n_action_steps == 1).
"""

from __future__ import annotations

import numpy as np


class TemporalEnsembler:
    """Online exponentially weighted average over overlapping chunks (ACT, Algorithm 2)."""

    def __init__(self, temporal_ensemble_coeff: float, chunk_size: int):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.coeff = float(temporal_ensemble_coeff)
        self.chunk_size = int(chunk_size)
        self.weights = np.exp(-np.float32(self.coeff) * np.arange(self.chunk_size, dtype=np.float32)).astype(
            np.float32
        )
        self.weights_cumsum = np.cumsum(self.weights, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget everything (call at the start of an episode)."""
        self._actions: np.ndarray | None = None  # (B, n, A) running averages for the next n timesteps
        self._counts: np.ndarray | None = None  # (n, 1) how many predictions each average holds

    def update(self, actions: np.ndarray) -> np.ndarray:
        """Fold in a new (B, chunk_size, A) chunk predicted at this step; return the (B, A) action to run."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 3 or actions.shape[1] != self.chunk_size:
            raise ValueError(f"expected a (B, {self.chunk_size}, A) chunk, got shape {actions.shape}")
        if self._actions is None:
            self._actions = actions.copy()
            self._counts = np.ones((self.chunk_size, 1), dtype=np.int64)
        else:
            if self._actions.shape[0] != actions.shape[0] or self._actions.shape[2] != actions.shape[2]:
                raise ValueError(
                    f"chunk shape {actions.shape} does not match the running one {self._actions.shape}"
                )
            c = self._counts
            avg = self._actions * self.weights_cumsum[c - 1]
            avg = avg + actions[:, :-1] * self.weights[c]
            avg = avg / self.weights_cumsum[c]
            self._counts = np.minimum(c + 1, self.chunk_size)
            self._actions = np.concatenate([avg.astype(np.float32), actions[:, -1:]], axis=1)
            self._counts = np.concatenate([self._counts, np.ones((1, 1), np.int64)], axis=0)
        action = self._actions[:, 0]
        self._actions, self._counts = self._actions[:, 1:], self._counts[1:]
        return action


MERGE_RULES = ("latest", "average", "weighted", "ensemble")


class ActionSchedule:
    """Actions by control timestep, from chunks that arrive late and overlap (asynchronous inference).

    A chunk computed from the observation of timestep t holds the actions for t, t+1, ...; by the time it
    arrives some of those timesteps have been executed and are dropped. Where a new chunk overlaps the
    actions already scheduled, `merge` decides:
    - "latest": the new chunk replaces the old actions (what LeRobot's sync queue and `latest_only` do);
    - "average": the plain mean of every prediction for that timestep (LeRobot's `average`);
    - "weighted": `(1 - new_weight) * old + new_weight * new`, LeRobot's `weighted_average` with 0.7;
    - "ensemble": ACT's temporal ensembling, the mean weighted by `exp(-coeff * i)` with i = 0 for the
      OLDEST prediction of that timestep (the `TemporalEnsembler` rule, for chunks that arrive late).
    """

    def __init__(self, merge: str = "latest", *, ensemble_coeff: float = 0.01, new_weight: float = 0.7):
        if merge not in MERGE_RULES:
            raise ValueError(f"merge must be one of {MERGE_RULES}, got {merge!r}")
        if not 0.0 < new_weight <= 1.0:
            raise ValueError(f"new_weight must be in (0, 1], got {new_weight}")
        self.merge = merge
        self.coeff = float(ensemble_coeff)
        self.new_weight = float(new_weight)
        self.reset()

    def reset(self) -> None:
        # timestep -> [weighted sum, weight sum, number of predictions] (value = sum / weight sum)
        self._slots: dict[int, list] = {}

    def add(self, chunk: np.ndarray, start: int, now: int) -> int:
        """Schedule `chunk` (n, A), whose row i is for timestep `start + i`; rows before `now` are dropped
        (their timesteps were executed). Returns how many rows were dropped."""
        chunk = np.asarray(chunk, np.float64)
        if chunk.ndim != 2:
            raise ValueError(f"expected an (n, A) chunk, got shape {chunk.shape}")
        dropped = 0
        for i, action in enumerate(chunk):
            t = start + i
            if t < now:
                dropped += 1
                continue
            slot = self._slots.get(t)
            if slot is None or self.merge == "latest":
                self._slots[t] = [action.copy(), 1.0, 1]
            elif self.merge == "weighted":
                value = slot[0] / slot[1]
                self._slots[t] = [(1 - self.new_weight) * value + self.new_weight * action, 1.0, slot[2] + 1]
            else:
                w = 1.0 if self.merge == "average" else float(np.exp(-self.coeff * slot[2]))
                slot[0] = slot[0] + w * action
                slot[1] += w
                slot[2] += 1
        return dropped

    def ahead(self, step: int) -> int:
        """How many consecutive timesteps from `step` on have an action."""
        n = 0
        while step + n in self._slots:
            n += 1
        return n

    def pop(self, step: int) -> np.ndarray | None:
        """The action for `step` (None if none arrived for it); timesteps up to `step` are forgotten."""
        slot = self._slots.pop(step, None)
        for t in [t for t in self._slots if t < step]:
            del self._slots[t]
        return None if slot is None else slot[0] / slot[1]

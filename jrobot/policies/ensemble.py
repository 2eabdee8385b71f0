"""Turning action chunks into one action per control step: LeRobot's temporal ensembler and action queue.

numpy only (no jax/flax): the real-time runtime imports this next to an exported inference function.

`TemporalEnsembler` reproduces LeRobot's `ACTTemporalEnsembler` (float32, same online update): the
action executed for a future timestep is the weighted mean of every prediction made for it, with
weights `w_i = exp(-coeff * i)` where i = 0 is the OLDEST prediction (coeff > 0 favours older ones,
0 is uniform, < 0 favours newer ones). The policy is queried every step (n_action_steps == 1).
"""

from __future__ import annotations

from collections import deque

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


class ActionQueue:
    """LeRobot's `select_action` queue: run the first `n_action_steps` actions of a chunk, one per call."""

    def __init__(self, n_action_steps: int):
        if n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}")
        self.n_action_steps = int(n_action_steps)
        self._queue: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def empty(self) -> bool:
        return not self._queue

    def reset(self) -> None:
        self._queue.clear()

    def push(self, chunk: np.ndarray) -> None:
        """Queue `chunk[:, :n_action_steps]` (chunk is (B, T, A) with T >= n_action_steps)."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 3 or chunk.shape[1] < self.n_action_steps:
            raise ValueError(f"expected a (B, >={self.n_action_steps}, A) chunk, got shape {chunk.shape}")
        self._queue.extend(chunk[:, : self.n_action_steps].transpose(1, 0, 2))

    def pop(self) -> np.ndarray:
        """The next (B, A) action."""
        if not self._queue:
            raise IndexError("action queue is empty: push a new chunk first")
        return self._queue.popleft()

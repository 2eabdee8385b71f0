"""What every policy the controller drives shares, without jax: robot readings -> policy inputs.

`ObservationBuilder` turns a robot's `get_observation()` dict (joint floats + camera images) into the
(1, n_obs, ...) input of a bundle, with the same image transform as the shards. It serves a bundle run
here (`policy.BundlePolicy`) and one run by a jrobot server (`jrobot.serving.client.RemotePolicy`),
which both describe themselves by the bundle's policy.json (`DescribedByBundle`). This module imports
no jax, so a laptop that drives its arm from a remote server needs none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from jrobot.bundle import BundleError, BundleInfo
from jrobot.features import ACTION_KEY, IMAGE_PREFIX, STATE_KEY
from jrobot.image_transforms import resize_frame
from jrobot.policies.spec import FeatureType

TASK_KEY = "task"
# the control step an observation was taken at; travels with remote requests (servers echo it)
TIMESTEP_KEY = "__timestep__"
NEEDS_TASK = "this policy needs a task instruction (--task or observation['task'])"


class DescribedByBundle:
    """The controller's view of a policy described by a bundle's policy.json (`self.info`)."""

    info: BundleInfo

    @property
    def spec(self):
        return self.info.spec

    @property
    def needs_task(self) -> bool:
        """Whether the policy is language-conditioned, i.e. needs a task instruction every call."""
        return bool(self.info.spec.language_keys)

    @property
    def n_obs_steps(self) -> int:
        return self.info.spec.n_obs_steps

    @property
    def n_action_steps(self) -> int:
        return self.info.spec.n_action_steps

    @property
    def chunk_size(self) -> int:
        return self.info.spec.chunk_size

    @property
    def temporal_ensemble_coeff(self) -> float | None:
        return self.info.spec.temporal_ensemble_coeff

    @property
    def fps(self) -> int:
        return self.info.fps

    @property
    def action_names(self) -> list[str]:
        names = self.info.features[ACTION_KEY].flat_names if ACTION_KEY in self.info.features else None
        if not names:
            raise BundleError("policy.json: the action feature has no joint names")
        return list(names)

    @property
    def action_stats(self) -> Mapping[str, Any] | None:
        """The action's min/max in the training data (the safety clamp), None if unknown."""
        stats = self.info.stats.get(ACTION_KEY, {})
        return stats if "min" in stats and "max" in stats else None

    def observation_builder(self, task: str | None = None) -> ObservationBuilder:
        return ObservationBuilder(self.info, task=task)


class ObservationBuilder:
    """Robot observation dicts -> the policy's (1, n_obs, ...) input, keeping the observation history.

    `task`, when set, is added to every input as `observation["task"]`: the instruction a language
    policy follows; it can be changed between steps (the next observation carries the new one).
    """

    def __init__(self, info: BundleInfo, *, task: str | None = None):
        self.info = info
        self.task = task
        self.spec = info.spec
        state_feat = info.features.get(STATE_KEY)
        self.state_names = state_feat.flat_names if state_feat is not None else None
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=self.spec.n_obs_steps)

    def reset(self) -> None:
        self._history.clear()

    def convert(self, robot_obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One robot observation -> {policy key: array without batch/history axes}."""
        out: dict[str, np.ndarray] = {}
        for key, feat in self.spec.input_features.items():
            if feat.type is FeatureType.VISUAL:
                cam = key[len(IMAGE_PREFIX) :] if key.startswith(IMAGE_PREFIX) else key
                img = robot_obs.get(cam, robot_obs.get(key))
                if img is None:
                    raise BundleError(f"the robot gives no camera {cam!r}, which the policy needs ({key})")
                h, w, _ = self.info.image_shapes[key]
                out[key] = resize_frame(np.asarray(img), (h, w))
            elif key == STATE_KEY:
                if STATE_KEY in robot_obs:
                    out[key] = np.asarray(robot_obs[STATE_KEY], np.float32)
                else:
                    names = self.state_names
                    if names is None:
                        raise BundleError("policy.json has no state feature names to read the robot's joints")
                    missing = [n for n in names if n not in robot_obs]
                    if missing:
                        raise BundleError(
                            f"the robot observation lacks {missing} (policy state names {names})"
                        )
                    out[key] = np.asarray([robot_obs[n] for n in names], np.float32)
            elif feat.type is FeatureType.ENV:
                if key not in robot_obs:
                    raise BundleError(f"the robot observation lacks {key!r}")
                out[key] = np.asarray(robot_obs[key], np.float32)
        return out

    def push(self, robot_obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Add an observation; return the batched (1, n_obs, ...) policy input (history padded by repetition)."""
        self._history.append(self.convert(robot_obs))
        while len(self._history) < self.spec.n_obs_steps:
            self._history.appendleft(self._history[0])
        out: dict[str, Any] = {k: np.stack([h[k] for h in self._history])[None] for k in self._history[-1]}
        if self.task is not None:
            out[TASK_KEY] = self.task
        return out

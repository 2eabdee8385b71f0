"""Periodic evaluation during training: the in-memory model rolled out in the simulator.

`jrobot.runtime.evaluate.evaluate` drives anything with a bundle's `predict` interface through the runtime's
episode loop; `ModelPolicy` puts the NNX model being trained behind that interface, so training-time
success rates come from the same loop, observation conversion and safety path as `jrobot.eval` on an
exported bundle. It lives here, not in `jrobot.eval`, because it needs flax, which the runtime must
never import.

A language-conditioned policy gets the episode's instruction as `observation["task"]` (the controller
adds the env's task to every observation); `ModelPolicy` turns it into the LANGUAGE inputs with the
model's own tokenizer, through the same `jrobot.language.language_inputs` the bundle runtime uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from jrobot.bundle import BundleInfo
from jrobot.language import language_inputs
from jrobot.policies.base import load_policy_module
from jrobot.runtime.evaluate import evaluate
from jrobot.runtime.observations import NEEDS_TASK, TASK_KEY, TIMESTEP_KEY, DescribedByBundle
from jrobot.train.export import language_tokenizer


class ModelPolicy(DescribedByBundle):
    """An in-memory NNX policy behind the BundlePolicy interface."""

    def __init__(self, model: Any, features: Mapping[str, Any], fps: int):
        spec = model.spec
        self.tokenizer = language_tokenizer(model)
        module = load_policy_module(spec.type)
        self.info = BundleInfo(
            spec=spec,
            stats=model.normalizer.stats_dict(),
            features=dict(features),
            fps=int(fps),
            robot_type=None,
            image_shapes={
                k: (f.shape[1], f.shape[2], f.shape[0])
                for k, f in spec.input_features.items()
                if k in spec.image_keys
            },
            variants=[],
            stochastic=spec.stochastic,
            source={},
            training_config=None,
        )
        graphdef, state = nnx.split(model)
        self._state = state
        self._fn = jax.jit(lambda st, obs, key: module.sample_actions(nnx.merge(graphdef, st), obs, key))
        self._key = jax.random.PRNGKey(0)

    def seed(self, seed: int) -> None:
        self._key = jax.random.PRNGKey(seed)

    @property
    def needs_task(self) -> bool:
        return self.tokenizer is not None

    def predict(self, observation: Mapping[str, Any], *, task: Any = None, **_: Any) -> np.ndarray:
        obs = {k: v for k, v in observation.items() if k not in (TASK_KEY, TIMESTEP_KEY)}
        if self.tokenizer is not None:
            tasks = observation.get(TASK_KEY, task)
            if tasks is None:
                raise ValueError(NEEDS_TASK)
            batch = next((np.shape(v)[0] for v in obs.values()), None)
            obs.update(language_inputs(self.tokenizer, self.spec.language_keys, tasks, batch=batch))
        self._key, key = jax.random.split(self._key)
        return np.asarray(self._fn(self._state, obs, key))


def evaluate_model(model: Any, *, features: Mapping[str, Any], fps: int, **kwargs: Any) -> dict[str, Any]:
    """Success rate of `model` over seeded sim episodes (no videos); kwargs as `jrobot.runtime.evaluate.evaluate`."""
    return evaluate(ModelPolicy(model, features, fps), videos=False, **kwargs)

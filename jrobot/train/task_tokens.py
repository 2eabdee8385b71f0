"""Each training sample's task instruction as the LANGUAGE inputs of a language-conditioned policy.

The pipeline gives every sample two small integers (`jrobot.pipeline.windows.WindowSource`): its shard
set (`dataset_index`) and the task of its frame in that set's task list (`task_index`, an index into the
shard manifest's `tasks`; the task of the sample's episode). A policy with `spec.language_keys` reads token
ids and an attention mask (B, L) instead. `TaskTokenTable` tokenizes every task of every shard set once,
with the model's own tokenizer through `jrobot.language.language_inputs` (the call the exported bundle
makes on a task string at run time, so training and the robot see the same tokens), and turns the two
indices into those inputs with a numpy gather on the host, just before the batch goes to the devices.

Policies without language never build one, so their batches and steps are exactly what they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jrobot.language import TaskTokenizer, language_inputs
from jrobot.policies.spec import PolicySpec
from jrobot.shards.format import ShardSet
from jrobot.train.config_util import ConfigError

DATASET_INDEX_KEY = "dataset_index"
TASK_INDEX_KEY = "task_index"


class TaskTokenTable:
    """(dataset_index, task_index) -> {LANGUAGE key: (B, L) array}, from task lists tokenized once.

    `task_lists[k]` is shard set k's task list (its manifest's `tasks`, in task_index order). A task
    text shared by several sets is tokenized once.
    """

    def __init__(
        self,
        tokenizer: TaskTokenizer,
        keys: Sequence[str],
        task_lists: Sequence[Sequence[str]],
        *,
        names: Sequence[str] | None = None,
    ):
        if not keys:
            raise ValueError("TaskTokenTable needs the policy's LANGUAGE input keys")
        names = list(names) if names is not None else [f"shard set {k}" for k in range(len(task_lists))]
        unique: dict[str, int] = {}
        rows: list[list[int]] = []
        for k, tasks in enumerate(task_lists):
            if not tasks:
                raise ConfigError(
                    f"the policy is language-conditioned (it reads {list(keys)}), but {names[k]} holds no "
                    "task instructions (its manifest lists no tasks): train it on a dataset recorded with a "
                    "task (`jrobot.record --dataset.single_task=...`; LeRobot datasets list theirs in "
                    "meta/tasks), then rebuild the shards"
                )
            rows.append([unique.setdefault(str(t), len(unique)) for t in tasks])
        self.keys = tuple(keys)
        self.tasks = list(unique)
        self.table = language_inputs(tokenizer, self.keys, self.tasks)
        self.max_length = int(tokenizer.max_length)
        self._sizes = np.array([len(r) for r in rows], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)[:-1]]).astype(np.int64)
        self._rows = np.array([i for r in rows for i in r], dtype=np.int64)

    @classmethod
    def for_policy(
        cls, spec: PolicySpec, tokenizer: TaskTokenizer | None, shard_sets: Sequence[ShardSet]
    ) -> TaskTokenTable | None:
        """The table for a policy that reads language (checked against the shards), else None."""
        if not spec.language_keys:
            return None
        if tokenizer is None:
            raise ValueError(f"the {spec.type} policy reads {list(spec.language_keys)} but has no tokenizer")
        for s in shard_sets:
            if s.manifest.tasks and TASK_INDEX_KEY not in s.lowdim_keys():
                raise ConfigError(
                    f"{s.path}: the shards list tasks but store no per-frame {TASK_INDEX_KEY!r}; "
                    "rebuild them with `python -m data_tools.build_shards`"
                )
        return cls(
            tokenizer,
            spec.language_keys,
            [s.manifest.tasks for s in shard_sets],
            names=[f"the shards at {s.path}" for s in shard_sets],
        )

    def lookup(self, dataset_index: Any, task_index: Any) -> dict[str, np.ndarray]:
        """The LANGUAGE inputs of samples (B,) given their shard set and task indices."""
        d = np.asarray(dataset_index, dtype=np.int64).reshape(-1)
        t = np.asarray(task_index, dtype=np.int64).reshape(-1)
        if d.shape != t.shape:
            raise ValueError(f"{d.size} dataset indices for {t.size} task indices")
        if d.size and (d.min() < 0 or d.max() >= self._sizes.size):
            raise ValueError(f"dataset_index outside 0..{self._sizes.size - 1}: {sorted(set(d.tolist()))}")
        bad = (t < 0) | (t >= self._sizes[d])
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"task_index {int(t[j])} of shard set {int(d[j])} is outside its {int(self._sizes[d[j]])} tasks"
            )
        rows = self._rows[self._offsets[d] + t]
        return {k: v[rows] for k, v in self.table.items()}

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """`batch` (a host batch of the pipeline) plus its LANGUAGE inputs."""
        missing = [k for k in (DATASET_INDEX_KEY, TASK_INDEX_KEY) if k not in batch]
        if missing:
            raise KeyError(
                f"the batch lacks {missing}, which a language-conditioned policy's inputs come from"
            )
        return {**batch, **self.lookup(batch[DATASET_INDEX_KEY], batch[TASK_INDEX_KEY])}

"""Every sample carries its task: `task_index` into its shard set's task list, with `dataset_index`.

What a language-conditioned policy's instruction is made from (`jrobot.train.task_tokens`). Shard sets
number their tasks on their own (first seen over the packed episodes), so the pair, not the task index
alone, names the task when sets are mixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from jrobot.data.read.reader import open_dataset
from jrobot.features import STATE_KEY
from jrobot.pipeline.loader import PipelineConfig, batch_spec, make_eval_dataset, make_train_dataset
from jrobot.pipeline.windows import WindowSpec
from jrobot.shards.builder import build_shards
from jrobot.shards.format import ShardSet


@pytest.fixture(scope="module")
def episode_1_only(tmp_path_factory, v30_dir) -> str:
    out = tmp_path_factory.mktemp("tasks") / "ep1"
    build_shards(v30_dir, out, resolution=(32, 48), episodes=[1], workers=0, progress=False)
    return str(out)


def _cfg(paths, **kw) -> PipelineConfig:
    window = WindowSpec.for_policy(observation_deltas=[0], action_deltas=range(4), state_keys=[STATE_KEY])
    return PipelineConfig(**{"shards": list(paths), "window": window, "batch_size": 16, "seed": 0, **kw})


def _episode_task(shards: ShardSet, episode: int) -> str:
    row = list(shards.episodes["episode_index"]).index(int(episode))
    return str(shards.episodes["task"][row])


def test_the_task_index_of_each_sample_names_its_episode_task(shards, episode_1_only, v30_dir):
    sets = [ShardSet(shards), ShardSet(episode_1_only)]
    # the two sets number the same task differently: the single-episode set's task 0 is the full set's 1
    assert sets[0].manifest.tasks == ["pick the cube", "place the cube in the bin"]
    assert sets[1].manifest.tasks == ["place the cube in the bin"]
    src = open_dataset(v30_dir)
    try:
        src_tasks = [src.tasks[int(t)] for t in src.column("task_index").reshape(-1)]
    finally:
        src.close()
    cfg = _cfg([shards, episode_1_only], weights=[1.0, 1.0])
    assert batch_spec(cfg)["task_index"] == ((16,), np.dtype(np.int64))
    seen = set()
    it = iter(make_train_dataset(cfg))
    for _ in range(12):
        b = next(it)
        assert b["task_index"].shape == (16,) and b["task_index"].dtype == np.int64
        for d, t, e, i in zip(
            b["dataset_index"], b["task_index"], b["episode_index"], b["index"], strict=True
        ):
            s = sets[int(d)]
            text = s.manifest.tasks[int(t)]
            assert text == _episode_task(s, e), (d, t, e)
            if d == 0:  # the full set's frames are the source dataset's frames, in order
                assert text == src_tasks[int(i)]
            seen.add((int(d), text))
    assert {d for d, _ in seen} == {0, 1} and len({t for _, t in seen}) == 2


def test_validation_batches_carry_the_task_of_the_held_out_episode(shards):
    s = ShardSet(shards)
    for ep in (0, 1):
        batches = list(make_eval_dataset(_cfg([shards], val_episodes=[ep], batch_size=4), split="val"))
        assert batches
        tasks = {s.manifest.tasks[int(t)] for b in batches for t in b["task_index"]}
        assert tasks == {_episode_task(s, ep)}

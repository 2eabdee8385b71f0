"""The gymnasium environments: API conformance, spaces, seeding, time limit, bad actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import jrobot.sim
from jrobot.features import STATE_KEY


def test_envs_are_registered_on_import():
    for env_id in ("jrobot/SO101PickPlace-v0", "jrobot/SO101Reach-v0"):
        assert env_id in gym.registry
    assert gym.registry["jrobot/SO101PickPlace-v0"].max_episode_steps == 300
    jrobot.sim.register_envs()  # idempotent


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("jrobot/SO101PickPlace-v0", {}), ("jrobot/SO101Reach-v0", {"cameras": ()})],
)
def test_env_checker(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_spaces_keys_and_units():
    env = gym.make("jrobot/SO101PickPlace-v0", image_size=(48, 64))
    obs, info = env.reset(seed=0)
    assert set(obs) == {STATE_KEY, "observation.images.front", "observation.images.wrist"}
    assert obs[STATE_KEY].dtype == np.float32 and obs[STATE_KEY].shape == (6,)
    assert obs["observation.images.front"].shape == (48, 64, 3)
    assert obs["observation.images.wrist"].dtype == np.uint8
    np.testing.assert_allclose(obs[STATE_KEY], [0, -20, 20, 90, 0, 10], atol=0.5)  # home, degrees
    lo, hi = env.action_space.low, env.action_space.high
    assert lo[5] == 0 and hi[5] == 100  # gripper percent
    assert hi[0] == pytest.approx(110.0, abs=1e-3) and lo[0] == pytest.approx(-110.0, abs=1e-3)
    assert info["is_success"] is False and "cube" in info["task"]
    env.close()


def test_range_mode_env():
    env = gym.make("jrobot/SO101Reach-v0", cameras=(), use_degrees=False)
    obs, _ = env.reset(seed=0)
    assert env.action_space.low[0] == -100 and env.action_space.high[0] == 100
    assert -100 <= obs[STATE_KEY][1] <= 100
    assert obs["observation.environment_state"].shape == (3,)
    env.close()


def _rollout(seed: int, n: int = 25) -> list[dict[str, np.ndarray]]:
    env = gym.make("jrobot/SO101PickPlace-v0", image_size=(48, 64))
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rng = np.random.default_rng(123)
    for _ in range(n):
        action = obs["observation.state"] + rng.normal(0, 5, size=6).astype(np.float32)
        obs, *_ = env.step(action)
        out.append(obs)
    env.close()
    return out


def test_same_seed_same_episode_and_different_seed_different_cube():
    a, b, c = _rollout(7), _rollout(7), _rollout(8)
    for oa, ob in zip(a, b):
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
    assert not np.array_equal(a[0]["observation.images.front"], c[0]["observation.images.front"])


def test_time_limit_truncates():
    env = gym.make("jrobot/SO101Reach-v0", cameras=(), max_episode_steps=12)
    obs, _ = env.reset(seed=0)
    for i in range(12):
        obs, _, terminated, truncated, _ = env.step(obs["observation.state"])
        assert not terminated
        assert truncated == (i == 11)
    env.close()


def test_bad_actions_raise_and_out_of_range_is_clipped():
    env = gym.make("jrobot/SO101Reach-v0", cameras=())
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([0, 0, 0, np.nan, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5, dtype=np.float32))
    action = obs["observation.state"].copy()
    action[5] = 500.0
    env.step(action)
    assert env.unwrapped.sim.joint_targets()[5] == pytest.approx(100.0)
    env.close()


def test_render_rgb_array():
    env = gym.make("jrobot/SO101PickPlace-v0", cameras=(), render_mode="rgb_array", render_size=(60, 80))
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (60, 80, 3) and frame.std() > 10
    env.close()

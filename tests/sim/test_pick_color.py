"""`jrobot/SO101PickColor-v0`: three cubes, the episode's instruction names the one to put in the bin.

Everything runs real MuJoCo: layouts come from the task's reset, success and `wrong_object` are judged
on cubes teleported into the bin and settled by the physics, the expert plays whole episodes, and the
recording goes through `jrobot.record` into a dataset read back from disk.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import jrobot.sim
from jrobot.cli import Binder
from jrobot.data.read.reader import open_dataset
from jrobot.recording.devices import robot_from_flags
from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
from jrobot.sim.expert import PICK_COLOR_EXPERT_CONFIG, PickPlaceExpert, make_expert
from jrobot.sim.robot import SimExpertTeleop, SimRobot
from jrobot.sim.simulator import SO101Sim
from jrobot.sim.tasks import ENV_TASKS, PICK_COLOR_TEMPLATES, PickColorTask, colors_named

ENV_ID = "jrobot/SO101PickColor-v0"


@pytest.fixture(scope="module")
def sim() -> SO101Sim:
    s = SO101Sim("pick_color", cameras=())
    yield s
    s.close()


def _cube_poses(sim: SO101Sim) -> dict[str, tuple[np.ndarray, float]]:
    return {c: (v["pos"], v["yaw"]) for c, v in sim.task_state()["cubes"].items()}


def _templates_for(color: str) -> set[str]:
    return {t.format(color=color) for t in PICK_COLOR_TEMPLATES}


def test_registered_with_pick_place_conventions():
    assert ENV_ID in gym.registry
    assert (
        gym.registry[ENV_ID].max_episode_steps == gym.registry["jrobot/SO101PickPlace-v0"].max_episode_steps
    )
    assert set(ENV_TASKS) == set(jrobot.sim.ENV_IDS)  # every env's task can be named by its env id
    assert isinstance(SO101Sim(ENV_ID, cameras=()).task, PickColorTask)
    assert len(PICK_COLOR_TEMPLATES) >= 4


def test_reset_places_three_cubes_apart_in_reach(sim):
    task = sim.task
    assert isinstance(task, PickColorTask)
    for seed in range(40):
        sim.reset(seed)
        poses = _cube_poses(sim)
        assert set(poses) == {"red", "green", "blue"}
        for pos, yaw in poses.values():
            assert task.cube_x[0] <= pos[0] <= task.cube_x[1]
            assert task.cube_y[0] <= pos[1] <= task.cube_y[1]
            assert pos[2] == pytest.approx(task.cube_half)  # on the table
            r = float(np.linalg.norm(pos[:2] - task.pan_axis_xy))
            assert task.reach_radius[0] <= r <= task.reach_radius[1]
            assert task.cube_yaw_deg[0] - 1e-6 <= np.degrees(yaw) <= task.cube_yaw_deg[1] + 1e-6
        for (_, (p, _)), (_, (q, _)) in itertools.combinations(poses.items(), 2):
            assert np.linalg.norm(p[:2] - q[:2]) >= task.min_separation
    # The cubes start at rest and do not touch: a second of physics leaves them where they were.
    before = _cube_poses(sim)
    for _ in range(30):
        sim.step()
    for c, (pos, _) in _cube_poses(sim).items():
        np.testing.assert_allclose(pos, before[c][0], atol=1e-3)


def test_instruction_names_the_target_and_flows_to_the_env_info():
    env = gym.make(ENV_ID, cameras=(), environment_state=True)
    names = env.unwrapped.sim.task.environment_state_names
    assert len(names) == 18 and names[-3:] == ("target_red", "target_green", "target_blue")
    seen_targets, seen_instructions = set(), set()
    for seed in range(24):
        obs, info = env.reset(seed=seed)
        target, task = info["target_color"], info["task"]
        assert task in _templates_for(target)
        assert colors_named(task) == [target]
        assert env.unwrapped.task_description == task == env.unwrapped.sim.task.description
        assert info["wrong_object"] is False and info["is_success"] is False
        state = obs["observation.environment_state"]
        assert state.shape == (18,)
        np.testing.assert_array_equal(state[-3:], [c == target for c in ("red", "green", "blue")])
        pos = env.unwrapped.sim.task_state()["cubes"]
        for i, c in enumerate(("red", "green", "blue")):
            np.testing.assert_allclose(state[5 * i : 5 * i + 3], pos[c]["pos"], atol=1e-6)
        seen_targets.add(target)
        seen_instructions.add(task)
        _, _, _, _, step_info = env.step(obs["observation.state"])
        assert step_info["task"] == task and step_info["target_color"] == target
    assert seen_targets == {"red", "green", "blue"}
    assert len(seen_instructions) >= 6  # colours x wordings vary across seeds
    # The same seed gives the same episode.
    _, a = env.reset(seed=5)
    _, b = env.reset(seed=5)
    assert a["task"] == b["task"]
    env.close()


def test_target_and_instruction_can_be_chosen_on_the_same_layout():
    env = gym.make(ENV_ID, cameras=())
    sim = env.unwrapped.sim
    _, info = env.reset(seed=7)
    layout = _cube_poses(sim)
    other = next(c for c in ("red", "green", "blue") if c != info["target_color"])

    _, info2 = env.reset(seed=7, options={"target": other})
    assert info2["target_color"] == other and info2["task"] in _templates_for(other)
    for c, (pos, yaw) in _cube_poses(sim).items():  # same cubes, same places: only the ask changed
        np.testing.assert_array_equal(pos, layout[c][0])
        assert yaw == layout[c][1]
    assert sim.task_state()["target_color"] == other
    np.testing.assert_array_equal(sim.task_state()["cube_pos"], layout[other][0])

    text = f"Could you drop the {other} one into the bin?"
    _, info3 = env.reset(seed=7, options={"instruction": text})
    assert info3["task"] == text and info3["target_color"] == other
    _, info4 = env.reset(seed=7, options={"instruction": "Put the crimson cube away.", "target": "red"})
    assert info4["task"] == "Put the crimson cube away." and info4["target_color"] == "red"
    _, info5 = env.reset(seed=7)  # options last one episode only
    assert info5["task"] == info["task"]

    for bad in (
        {"target": "purple"},
        {"instruction": "Put the cube in the bin."},  # names no colour, no target given
        {"instruction": "Put the red cube on the blue cube."},  # two colours, no target given
        {"instruction": "Put the red cube in the bin.", "target": "green"},
        {"colour": "red"},
    ):
        with pytest.raises(ValueError):
            env.reset(seed=7, options=bad)
    with pytest.raises(ValueError, match="no reset option"):
        SO101Sim("pick_place", cameras=()).reset(0, options={"target": "red"})
    env.close()

    fixed = SO101Sim(PickColorTask(target="blue"), cameras=())
    for seed in range(5):
        fixed.reset(seed)
        assert fixed.task.target_color == "blue" and fixed.task.description in _templates_for("blue")
    with pytest.raises(ValueError, match="slot"):
        PickColorTask(templates=("Put the cube in the bin.",))


def _teleport(
    sim: SO101Sim, color: str, xy: np.ndarray, z: float, velocity: tuple[float, float, float] = (0, 0, 0)
) -> None:
    adr = sim.model.joint(f"cube_{color}").qposadr[0]
    dof = sim.model.joint(f"cube_{color}").dofadr[0]
    sim.data.qpos[adr : adr + 3] = (xy[0], xy[1], z)
    sim.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
    sim.data.qvel[dof : dof + 6] = 0.0
    sim.data.qvel[dof : dof + 3] = velocity
    mujoco.mj_forward(sim.model, sim.data)


def test_success_needs_the_named_cube_and_wrong_object_flags_the_others():
    env = gym.make(ENV_ID, cameras=(), terminate_on_success=False)
    sim = env.unwrapped.sim
    task = sim.task
    hold = None

    def settle(n: int = 20) -> dict:
        info = {}
        for _ in range(n):
            _, _, _, _, info = env.step(hold)
        return info

    obs, info = env.reset(seed=3)
    hold = obs["observation.state"]
    target = info["target_color"]
    others = [c for c in task.colors if c != target]
    bin_xy = task.bin_pos[:2]
    drop_z = task.bin_pos[2] + sim.task_state()["bin_floor_top"] + task.cube_half + 0.005

    # Another cube in the bin: not a success, but a wrong object.
    _teleport(sim, others[0], bin_xy + np.array([0.025, 0.0]), drop_z)
    info = settle()
    assert info["wrong_object"] is True and info["is_success"] is False
    # The named cube in the bin too: a success, still with the wrong object reported.
    _teleport(sim, target, bin_xy - np.array([0.025, 0.0]), drop_z)
    info = settle()
    assert info["is_success"] is True and info["wrong_object"] is True
    assert env.unwrapped.sim.reward() == 1.0

    # Only the named cube in the bin: a clean success.
    env.reset(seed=3)
    _teleport(sim, target, bin_xy, drop_z)
    info = settle()
    assert info["is_success"] is True and info["wrong_object"] is False
    # In the bin but still sliding: not resting, so not (yet) a success.
    _teleport(sim, target, bin_xy, drop_z, velocity=(0.2, 0.0, 0.0))
    assert task.cube_in_bin(sim.data, target) and not task.is_success(sim.model, sim.data)
    # Beside the bin (on its far side) on the table: no success.
    _teleport(sim, target, bin_xy + np.array([0.0, -0.09]), task.cube_half)
    info = settle()
    assert info["is_success"] is False and info["wrong_object"] is False
    env.close()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_expert_puts_the_named_cube_in_and_leaves_the_others(sim, seed):
    sim.reset(seed)
    expert = make_expert(sim)
    assert isinstance(expert, PickPlaceExpert) and expert.config == PICK_COLOR_EXPERT_CONFIG
    task = sim.task
    others = [c for c in task.colors if c != task.target_color]
    start = _cube_poses(sim)
    max_steps = gym.registry[ENV_ID].max_episode_steps
    for _ in range(max_steps):
        sim.set_joint_targets(expert.next_action())
        sim.step()
        assert not task.wrong_object(sim.data)
        if sim.is_success():
            break
    assert sim.is_success(), f"expert failed on seed {seed} ({task.description})"
    for c in others:  # the cubes it was not asked for stay where they were
        np.testing.assert_allclose(_cube_poses(sim)[c][0], start[c][0], atol=0.005)


def test_sim_robot_selects_the_task_from_the_command_line():
    for value in ("pick_color", ENV_ID):
        binder = Binder.from_argv(["--robot.type=sim", f"--robot.task={value}", "--robot.cameras=[]"])
        robot = robot_from_flags(binder)
        binder.finish()
        robot.connect()
        assert isinstance(robot.sim.task, PickColorTask)
        first = robot.task
        assert colors_named(first) == [robot.sim.task.target_color]
        robot.disconnect()


def test_recording_stores_each_episodes_instruction(tmp_path):
    seed, n = 0, 3
    probe = SO101Sim("pick_color", cameras=())
    expected = []
    for e in range(n):  # jrobot.record seeds episode e with seed + e
        probe.reset(seed + e)
        expected.append((probe.task.description, probe.task.target_color))
    assert len({t for t, _ in expected}) >= 2  # the episodes really differ

    robot = SimRobot(task="pick_color", cameras=("front",), image_size=(32, 40), environment_state=True)
    cfg = DatasetRecordConfig(root=tmp_path / "ds", num_episodes=n, episode_time_s=12.0)
    summary = record(robot, SimExpertTeleop(robot), RecordOptions(dataset=cfg, status=False, seed=seed))
    assert all(e["success"] for e in summary["saved"])

    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == n
    assert set(ds.tasks) == {t for t, _ in expected}  # meta/tasks.parquet: every instruction used, once
    assert len(ds.tasks) == len(set(ds.tasks))
    task_index = ds.column("task_index")
    episode_index = ds.column("episode_index")
    env_state = ds.column("observation.environment_state")
    for ep, (text, color) in zip(ds.episodes, expected, strict=True):
        assert list(ep.tasks) == [text]
        rows = np.flatnonzero(episode_index == ep.index)
        assert rows.size == ep.length > 0
        assert set(task_index[rows].tolist()) == {ds.tasks.index(text)}
        # the privileged one-hot recorded in every frame agrees with the episode's instruction
        hot = env_state[rows, -3:]
        np.testing.assert_array_equal(
            hot, np.tile([c == color for c in ("red", "green", "blue")], (rows.size, 1))
        )
        assert ds[int(rows[0])]["task"] == text and ds[int(rows[-1])]["task"] == text
    ds.close()

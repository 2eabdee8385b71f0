"""The scripted experts: they solve their tasks, smoothly, with actions in LeRobot units."""

from __future__ import annotations

import numpy as np
import pytest

from jrobot.kinematics.arm import ArmKinematics, top_down_rotation
from jrobot.sim.expert import PickPlaceExpert, ReachExpert, make_expert
from jrobot.sim.simulator import SO101Sim
from jrobot.sim.trajectory import min_jerk


def run_episode(sim: SO101Sim, seed: int, max_steps: int = 300) -> tuple[bool, np.ndarray]:
    sim.reset(seed)
    expert = make_expert(sim)
    actions = []
    for _ in range(max_steps):
        a = expert.next_action()
        actions.append(a)
        sim.set_joint_targets(a)
        sim.step()
        if sim.is_success():
            return True, np.array(actions)
    return False, np.array(actions)


def test_min_jerk_profile():
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and min_jerk(0.5) == pytest.approx(0.5)
    assert min_jerk(-1.0) == 0.0 and min_jerk(2.0) == 1.0


def test_ik_reaches_top_down_poses_in_the_workspace():
    sim = SO101Sim("pick_place", cameras=())
    kin = ArmKinematics(sim.model)
    q0 = np.radians([0, -20, 20, 90, 0])
    for xyz in [(0.17, 0.03, 0.025), (0.23, 0.11, 0.09), (0.2, -0.1, 0.045), (0.2, -0.1, 0.09)]:
        res = kin.solve(np.array(xyz), top_down_rotation(0.4), q0)
        assert res.ok(pos_tol=1e-4, rot_tol=1e-3), (xyz, res)
        pos, rot = kin.forward(res.qpos)
        np.testing.assert_allclose(pos, xyz, atol=1e-4)
        assert rot[2, 2] == pytest.approx(1.0, abs=1e-3)  # fingers straight down


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pick_place_expert_succeeds_smoothly(seed):
    sim = SO101Sim("pick_place", cameras=())
    ok, actions = run_episode(sim, seed)
    assert ok, f"expert failed on seed {seed}"
    assert len(actions) <= 200  # well under the 300-step (10 s) limit
    step = np.abs(np.diff(actions[:, :5], axis=0)).max()
    assert step < 4.0, f"arm target jumps {step:.2f} deg in one step"
    # minimum-jerk segments: the commanded accelerations stay small (deg per step^2)
    accel = np.abs(np.diff(actions[:, :5], n=2, axis=0)).max()
    assert accel < 0.8, f"arm target acceleration {accel:.3f} deg/step^2"
    # the jaws closed on the cube and it was carried (gripper stalls at the cube's width, not at 0)
    assert actions[:, 5].min() == pytest.approx(0.0, abs=1e-6)


def test_pick_place_expert_in_range_units():
    sim = SO101Sim("pick_place", cameras=(), use_degrees=False)
    ok, actions = run_episode(sim, 6)
    assert ok
    assert np.all(np.abs(actions[:, :5]) <= 100.0)


def test_pick_place_expert_is_deterministic():
    sim = SO101Sim("pick_place", cameras=())
    _, a1 = run_episode(sim, 11, max_steps=60)
    _, a2 = run_episode(sim, 11, max_steps=60)
    np.testing.assert_array_equal(a1, a2)


def test_expert_phases_and_done():
    sim = SO101Sim("pick_place", cameras=())
    sim.reset(5)
    expert = PickPlaceExpert(sim)
    phases = []
    while not expert.done:
        phases.append(expert.phase())
        sim.set_joint_targets(expert.next_action())
        sim.step()
    names = list(dict.fromkeys(phases))
    assert names == [
        "swing",
        "descend",
        "close",
        "settle",
        "lift",
        "carry",
        "lower",
        "release",
        "retreat",
        "home",
    ]
    assert expert.total_duration < 10.0
    # back home at the end
    np.testing.assert_allclose(sim.joint_targets(), sim.home, atol=0.5)
    assert sim.is_success()


def test_reach_expert():
    sim = SO101Sim("reach", cameras=())
    sim.reset(3)
    expert = ReachExpert(sim)
    for _ in range(60):
        sim.set_joint_targets(expert.next_action())
        sim.step()
    assert sim.is_success()


def test_expert_needs_its_task():
    with pytest.raises(TypeError, match="PickPlaceTask"):
        PickPlaceExpert(SO101Sim("reach", cameras=()))


@pytest.mark.slow
def test_pick_place_expert_success_rate_over_100_seeds():
    sim = SO101Sim("pick_place", cameras=())
    successes = sum(run_episode(sim, seed)[0] for seed in range(100))
    assert successes >= 90


def _play(sim: SO101Sim, expert: PickPlaceExpert, max_steps: int = 420) -> tuple[list[str], np.ndarray, list]:
    """Phases, actions and the target cube's xy of each step until the expert is done."""
    phases, actions, cube_xy = [], [], []
    for _ in range(max_steps):
        if expert.done:
            break
        actions.append(expert.next_action())
        phases.append(expert.phase())
        cube_xy.append(sim.task_state()["cube_pos"][:2].copy())
        sim.set_joint_targets(actions[-1])
        sim.step()
    return phases, np.array(actions), cube_xy


@pytest.mark.parametrize("task", ["pick_place", "pick_color"])
def test_a_missed_first_grasp_is_shown_and_recovered_from(task):
    sim = SO101Sim(task, cameras=())
    sim.reset(4)
    expert = make_expert(sim, regrasp_rate=1.0)
    phases, actions, cube_xy = _play(sim, expert)
    assert sim.is_success() and expert.grasps == 2
    names = list(dict.fromkeys(phases))
    assert names[:5] == ["swing", "descend", "close", "settle", "rise#2"]  # no lift of empty jaws
    assert names[5:] == [f"{p}#2" for p in ("swing", "descend", "close", "settle", "lift", "carry",
                                             "lower", "release", "retreat", "home")] + ["done"]  # fmt: skip
    # the cube was slid once, 3-4.5 cm, just as the jaws began to close, and grasped where it then lay
    jumps = np.linalg.norm(np.diff(np.array(cube_xy), axis=0), axis=1)
    (i,) = np.flatnonzero(jumps > 0.01)
    assert phases[i + 1] == "close" and phases[i] == "descend" and 0.03 <= jumps[i] <= 0.045 + 1e-9
    # the recovery is as smooth as the plan (no jump in the commanded joints) and ends back home
    assert np.abs(np.diff(actions[:, :5], axis=0)).max() < 4.0
    np.testing.assert_allclose(sim.joint_targets(), sim.home, atol=0.5)


def test_regrasp_demonstrations_are_reproducible_and_only_where_asked():
    sim = SO101Sim("pick_color", cameras=())
    drawn = []
    for seed in range(12):
        sim.reset(seed)
        drawn.append(make_expert(sim, regrasp_rate=0.5)._push is not None)
    assert 2 <= sum(drawn) <= 10  # about half of the episodes
    again = []
    for seed in range(12):
        sim.reset(seed)
        again.append(make_expert(sim, regrasp_rate=0.5)._push is not None)
    assert again == drawn
    sim.reset(0)
    state = sim.rng.bit_generator.state
    plain = make_expert(sim)
    assert plain._push is None and sim.rng.bit_generator.state == state  # the sim's stream untouched
    _play(sim, plain)
    assert plain.grasps == 1 and sim.is_success()


def test_a_cube_is_never_slid_onto_another_object():
    sim = SO101Sim("pick_color", cameras=())
    sim.reset(2)
    st = sim.task_state()
    other = next(c["pos"] for name, c in st["cubes"].items() if name != st["target_color"])
    before = sim.data.qpos.copy()
    assert not sim.move_target(other[:2] + 0.01)  # onto a neighbour: refused, nothing moved
    np.testing.assert_array_equal(sim.data.qpos, before)
    free = st["cube_pos"][:2] + np.array([0.0, -0.02])
    assert sim.move_target(free)
    np.testing.assert_allclose(sim.task_state()["cube_pos"][:2], free, atol=1e-9)


def test_expert_options_are_checked():
    sim = SO101Sim("pick_place", cameras=())
    with pytest.raises(ValueError, match="regrasp_rate must be in"):
        make_expert(sim, regrasp_rate=1.5)
    with pytest.raises(ValueError, match=r"unknown pick-and-place expert option\(s\) \['regrasp'\]"):
        make_expert(sim, regrasp=0.5)
    with pytest.raises(ValueError, match="'reach' expert takes no options"):
        make_expert(SO101Sim("reach", cameras=()), regrasp_rate=0.5)

"""MuJoCo simulation of the SO-101: MJCF scenes, gymnasium envs, scripted experts, sim robot.

Importing this package registers the gymnasium environments (MuJoCo itself is imported only when
one is made):

- `jrobot/SO101PickPlace-v0`: pick the cube, place it in the bin; 300 steps (10 s at 30 fps);
- `jrobot/SO101PickColor-v0`: three coloured cubes, put the one the episode's instruction names in the
  bin; 300 steps, as pick-place (the scripted expert succeeds after ~5.5 s on both, ~8.7 s when it
  shows a missed grasp and its recovery: `PickPlaceExpertConfig.regrasp_rate`);
- `jrobot/SO101Reach-v0`: move the gripper to a target point; 150 steps (5 s).

Modules: `units` (LeRobot units <-> radians, numpy only), `model` (scenes), `gl`/`render` (offscreen
rendering, EGL or OSMesa), `simulator` (`SO101Sim`), `tasks`, `kinematics`, `trajectory`, `expert`,
`env` (gymnasium), `robot` (`SimRobot`, `SimExpertTeleop`), `arm` (`ArmSim`, the joint-space model the
virtual servo bus can drive).
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: dict[str, str] = {
    "jrobot/SO101PickPlace-v0": "jrobot.sim.env:SO101PickPlaceEnv",
    "jrobot/SO101PickColor-v0": "jrobot.sim.env:SO101PickColorEnv",
    "jrobot/SO101Reach-v0": "jrobot.sim.env:SO101ReachEnv",
}
_MAX_STEPS = {"jrobot/SO101PickPlace-v0": 300, "jrobot/SO101PickColor-v0": 300, "jrobot/SO101Reach-v0": 150}


def register_envs() -> None:
    """Register the jrobot environments with gymnasium (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=_MAX_STEPS[env_id])


register_envs()

__all__ = ["ENV_IDS", "register_envs"]

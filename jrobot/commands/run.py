"""`python -m jrobot.run`: drive a robot with an exported policy bundle, in real time, on the CPU.

    # the simulated arm (3 episodes, each scored)
    python -m jrobot.run --policy bundles/act --robot.type=sim --episodes=3
    # a real SO-101 for 60 s, recording what happens
    python -m jrobot.run --policy bundles/act --robot.type=so101_follower --robot.port=/dev/ttyACM0 \\
        --robot.id=black --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --duration_s=60 --dataset.root=data/eval_act --dataset.single_task="pick the cube"
    # offline: a batch of recorded observations in, action chunks out (no robot)
    python -m jrobot.run --policy bundles/diffusion --observations in.npz --out out.npz
    # a language-conditioned policy (VLA) follows an instruction
    python -m jrobot.run --policy bundles/smolvla --robot.type=sim --task "pick the cube"
    # the policy runs on a GPU machine (python -m jrobot.serve there); the control loop stays here
    python -m jrobot.run --policy ws://gpu-box:8000 --token_file token.txt --robot.type=so101_follower ...
    # any openpi policy server (pi0/pi0.5 fine-tuned on SO-101 data), its keys mapped to this robot's
    python -m jrobot.run --policy openpi://gpu-box:8000 --robot.type=sim --task "pick the cube" \\
        --remote.obs_map="observation/image=observation.images.front,observation/state=observation.state"

The control loop runs at the bundle's fps; the next chunk is computed on a worker thread so the loop
never waits for inference (`--mode=sync` waits, as LeRobot's select_action does). Every action is
clamped to the joint range seen in training (widened by `--safety_margin`) and, with
`--safety_limits FILE`, to the joint ranges `jrobot.find_joint_limits` wrote there; the robot's
`max_relative_target` applies, and a non-finite action is never sent: the arm holds its last safe
position and the run stops. Ctrl-C or SIGTERM switch torque off. At the end a latency report gives
inference and loop-period p50/p99.

A remote policy (`--policy ws://HOST:PORT` for `jrobot.serve`, `openpi://HOST:PORT` for an openpi
server) is driven by the same loop: the next chunk is requested when the actions left fall to
`--chunk_threshold` (a fraction of n_action_steps; default: as late as the measured round trip
allows), each request carries the timestep of its observation, actions for timesteps already executed
are dropped, and overlapping chunks are merged by `--merge` (latest, average, weighted, ensemble). If
the server is slow or gone, the arm holds its last safe position (never extrapolated) and the run
stops after `--remote.timeout_s` with torque off, as on Ctrl-C; `--remote.reconnect=true` reopens a
dropped connection meanwhile. `--token_file` sends the server's shared secret.

A language-conditioned policy needs `--task`, its instruction; without the flag it follows
`--dataset.single_task`, else the robot's own task (the simulated arm's), else the run stops with an
error. Offline, IN.npz may hold `task`, a (B,) string array (one instruction per row; `--task` then
only fills in when it is absent), and `noise`, the initial noise of a stochastic policy. Policies
without language ignore the task.

This module needs jax, numpy and the bundle for a local policy (no jax at all for a remote one); it does
not import flax, grain, optax, orbax or wandb.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.runtime.drive import RunOptions, latency_summary, run_offline, run_robot, write_report
from jrobot.runtime.sources import open_policy

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    opts = binder.build(RunOptions)
    robot = None
    if opts.observations is None:
        from jrobot.recording.devices import robot_from_flags

        robot = robot_from_flags(binder)
    binder.finish()
    policy = open_policy(opts.policy, remote=opts.remote, token_file=opts.token_file, robot=robot)
    try:
        if robot is None:
            summary = run_offline(policy, opts.observations, opts.out, task=opts.task)
            print(f"wrote {opts.out}: action chunks {summary}")
            return 0
        policy.warmup()
        report = run_robot(robot, policy, opts)
    finally:
        if hasattr(policy, "close"):
            policy.close()
    print(latency_summary(report))
    if opts.report is not None:
        write_report(opts.report, report)
    if "stopped" in report:
        print(f"error: {report['stopped']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

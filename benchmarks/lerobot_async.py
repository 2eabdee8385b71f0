"""LeRobot's async inference driving jrobot's simulated SO-101: the baseline (b) of `serve.py`.

Runs under a LeRobot 0.4.x interpreter (never in the jrobot process), with this repository on
`sys.path` for the simulator only (`jrobot.sim` imports neither jax nor flax). That interpreter also
needs LeRobot's `async` extra (grpcio, protobuf) and mujoco:

    DIR/bin/pip install 'grpcio==1.73.1' 'protobuf>=6.31.1,<6.32' matplotlib mujoco==4.0.0
    DIR/bin/python benchmarks/lerobot_async.py '{"ckpt": ..., "chunk": 50, "delay_ms": 300, ...}'

What runs is LeRobot's own code: `python -m lerobot.async_inference.policy_server` in its own process
and `lerobot.async_inference.robot_client.RobotClient` here, with its action-receiving thread, its
`chunk_size_threshold`, its aggregation function and its observation/action methods. Two things are
supplied from outside, and nothing else is changed:
- the robot: `make_robot_from_config` returns jrobot's `SimRobot` (pick-and-place, 2 cameras 96x128),
  which has LeRobot's `Robot` interface (`observation_features`, `get_observation`, `send_action`);
  for SmolVLA the task sent with each observation is the sim's instruction;
- the delay: every `_predict_action_chunk` on the server takes at least `delay_ms`, as
  `python -m jrobot.serve --min_latency_ms` does. (LeRobot's own `--inference_latency` counts from the
  moment `GetActions` starts waiting for an observation, so it would add less delay after one arrives.)
The control loop is `RobotClient.control_loop`'s body with a tick record added: when each tick started
and whether it executed an action. Figures after the first executed action, as `serve.py` reports them
for jrobot: loop period p50/p99/max, ticks without a fresh action, hold gaps, and the round trip from
observation capture to the chunk's arrival.

Prints one JSON line.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

SERVER = textwrap.dedent(
    """
    import sys, time
    from lerobot.async_inference import policy_server as ps
    from lerobot.async_inference.configs import PolicyServerConfig

    delay_s = float(sys.argv[3])
    predict = ps.PolicyServer._predict_action_chunk

    def slowed(self, observation_t):
        t0 = time.perf_counter()
        out = predict(self, observation_t)
        time.sleep(max(0.0, delay_s - (time.perf_counter() - t0)))
        return out

    ps.PolicyServer._predict_action_chunk = slowed
    ps.serve.__wrapped__(PolicyServerConfig(host="127.0.0.1", port=int(sys.argv[1]), fps=int(sys.argv[2]),
                                            inference_latency=0.0))
    """
)


def pct(xs: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q)) if xs else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_with_chunk(src: Path, chunk: int, out: Path) -> Path:
    """`src`'s ACT architecture and processors with `chunk_size` = `n_action_steps` = `chunk`, random weights."""
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy

    cfg = ACTPolicy.from_pretrained(src).config
    if cfg.chunk_size == chunk and cfg.n_action_steps == chunk:
        return src
    cfg.chunk_size = cfg.n_action_steps = chunk
    torch.manual_seed(0)
    ACTPolicy(cfg).save_pretrained(out)
    for f in src.iterdir():
        if f.name.startswith("policy_") and not (out / f.name).exists():
            shutil.copy2(f, out / f.name)
    return out


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"LeRobot policy server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"LeRobot policy server not listening on {port} after {timeout_s:.0f} s")


def main() -> None:
    a = json.loads(sys.argv[1])
    sys.path.insert(0, a["repo"])
    work = Path(tempfile.mkdtemp(prefix="lerobot-async-"))
    os.chdir(work)  # LeRobot's async loggers write ./logs/ on import: keep them out of the caller's folder
    if a.get("vlm_dir"):  # SmolVLA's checkpoint names its VLM folder relative to the working directory
        (work / Path(a["vlm_dir"]).name).symlink_to(a["vlm_dir"])
    from lerobot.async_inference import robot_client as rc
    from lerobot.async_inference.configs import RobotClientConfig

    from jrobot.sim import gl  # noqa: F401  (decides MUJOCO_GL before mujoco renders)
    from jrobot.sim.robot import SimRobot, SimRobotConfig

    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(a["fps"]), str(a["delay_ms"] / 1000)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    try:
        policy_type = a.get("policy_type", "act")
        ckpt = Path(a["ckpt"]).absolute()
        if policy_type == "act":
            ckpt = checkpoint_with_chunk(ckpt, int(a["chunk"]), work / "ckpt")
        wait_for_port(port, server)
        robot = SimRobot(SimRobotConfig(image_size=(96, 128), seed=a["seed"]))
        rc.make_robot_from_config = lambda _config: robot
        cfg = RobotClientConfig(
            policy_type=policy_type,
            pretrained_name_or_path=str(ckpt.absolute()),
            robot=None,  # the robot is the one above
            actions_per_chunk=int(a["chunk"]),
            server_address=f"127.0.0.1:{port}",
            chunk_size_threshold=float(a["threshold"]),
            fps=int(a["fps"]),
            aggregate_fn_name=a["aggregate"],
        )
        client = rc.RobotClient(cfg)
        task = robot.task if policy_type == "smolvla" else ""  # the sim's instruction, as jrobot sends it
        round_trips: list[float] = []
        aggregate = client._aggregate_action_queues

        def timed_aggregate(incoming, aggregate_fn=None):
            if incoming:  # observation captured (its timestamp) -> the chunk computed from it arrived
                round_trips.append((time.time() - incoming[0].get_timestamp()) * 1000)
            return aggregate(incoming, aggregate_fn)

        client._aggregate_action_queues = timed_aggregate
        if not client.start():
            raise RuntimeError("RobotClient.start() failed: see the server log " + str(work / "server.log"))
        receiver = threading.Thread(target=client.receive_actions, daemon=True)
        receiver.start()
        ticks: list[tuple[float, bool]] = []
        first = None
        client.start_barrier.wait()
        t_start = time.perf_counter()
        while client.running:  # RobotClient.control_loop's body, with the tick record
            t = time.perf_counter()
            performed = False
            if client.actions_available():
                client.control_loop_action(False)
                performed = True
            if client._ready_to_send_observation():
                client.control_loop_observation(task, False)
            ticks.append((t, performed))
            if first is None and performed:
                first = len(ticks) - 1
            if first is not None and len(ticks) - first >= a["steps"]:
                break
            if first is None and t - t_start > a["first_chunk_timeout_s"]:
                break
            time.sleep(max(0, cfg.environment_dt - (time.perf_counter() - t)))
        client.stop()
        receiver.join(timeout=10)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    out: dict = {"steps": 0, "stopped": None, "round_trip_ms": round_trips}
    if first is None:
        out["stopped"] = f"no action within {a['first_chunk_timeout_s']} s"
        tail = (work / "server.log").read_text()[-2000:]
        out["server_log_tail"] = tail
    else:
        run = ticks[first:]
        times = [t for t, _ in run]
        periods = [(b - a_) * 1000 for a_, b in itertools.pairwise(times)]
        starved = [i for i, (_, p) in enumerate(run) if not p]
        gaps, longest, i = 0, 0.0, 0
        while i < len(run):
            if run[i][1]:
                i += 1
                continue
            j = i
            while j < len(run) and not run[j][1]:
                j += 1
            gaps += 1
            end = run[j][0] if j < len(run) else run[-1][0] + 1 / a["fps"]
            longest = max(longest, (end - run[i][0]) * 1000)
            i = j
        target = 1200.0 / a["fps"]
        out.update(
            {
                "steps": len(run),
                "loop_period_ms_p50": pct(periods, 50),
                "loop_period_ms_p99": pct(periods, 99),
                "loop_period_ms_max": max(periods) if periods else None,
                "target_ms": target,
                "p99_over_target": (pct(periods, 99) / target) if periods else None,
                "ticks_without_fresh_action": len(starved),
                "share_without_fresh_action": len(starved) / max(len(run) - 1, 1),
                "hold_gaps": gaps,
                "longest_hold_ms": longest,
                "requests": len(round_trips),
                "round_trip_ms_p50": pct(round_trips, 50),
                "round_trip_ms_p99": pct(round_trips, 99),
                "server_infer_ms_p50": None,
                "stale_actions_dropped": None,
                "first_tick_ms": (run[0][0] - t_start) * 1000,
            }
        )
    shutil.rmtree(work, ignore_errors=True)
    out.pop("round_trip_ms")
    print(json.dumps(out))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

"""Remote inference in the real-time loop: `jrobot.serve` + `RemotePolicy` vs the same policy in the loop.

    .venv/bin/python benchmarks/serve.py                         # ~6 min on 2 cores (150 ticks a run, 2 rounds)
    .venv/bin/python benchmarks/serve.py --steps 300 --out /tmp/serve_bench.json
    .venv/bin/python benchmarks/serve.py --scenarios act@300,act50@300 --variants async,sync
    JROBOT_OPENPI_PYTHON=/path/openpi-venv/bin/python .venv/bin/python benchmarks/serve.py

Each scenario is a bundle and an injected inference delay, `NAME@MS`:
- `act`: the LeRobot ACT parity checkpoint (`act_so101_tiny`: d=64, 2 cameras 96x128, chunk 10,
  n_action_steps 10), exported with `python -m jrobot.export --from-lerobot`;
- `vla`: the SmolVLA parity checkpoint (`smolvla_so101_tiny`, 2 cameras 48x64, chunk 8, stochastic,
  needs a task: the sim's own instruction), exported with `--vlm`;
- `act50`: the fixture's ACT architecture with chunk 50 / n_action_steps 50, random weights (built by
  `jrobot.policies.act.build`, timing only): a chunk that outlasts a 300 ms round trip, which the
  fixture's 10 actions (333 ms at 30 fps) do not (see below).
`MS` is `python -m jrobot.serve --min_latency_ms`: every server-side inference takes at least that long
(a stand-in for a bigger model; 0 = the bundle's own CPU time).

For each scenario `python -m jrobot.serve` is started in its own process on 127.0.0.1 and the simulated
SO-101 (`SimRobot`, pick-and-place, 2 cameras 96x128 rendered each tick) is driven for `--steps` ticks at
the bundle's 30 fps, paced in real time (`run_episode(..., realtime=True)`) by `PolicyController` with
timeout_s=`--timeout-s`. Variants (`--variants`):
- `async`: `PolicyController(RemotePolicy(url), mode="async")`: the next chunk is asked for as late as
  the measured round trip allows (the default `chunk_threshold=None`);
- `async_t50`: the same with `chunk_threshold=0.5` (LeRobot's chunk_size_threshold);
- `sync` (baseline a): the same bundle loaded here (`BundlePolicy`) behind a wrapper whose `predict`
  sleeps up to the same floor latency, in `mode="sync"`: inference inside the loop, which stalls it;
- `local_async`: that slowed local policy in `mode="async"` (no network: what the wire costs).
The server is stopped before the local variants run, so the two never share the 2 cores.

Every variant of a scenario runs `--rounds` times (default 2), the variants alternating within a
round (server up for the remote ones, then down for the local ones), because this VM's speed drifts
over minutes: each ratio is taken within its round and printed as the median with every round's value
and the spread; the table shows each variant's median round (by period p99) with every round's p99;
the async targets count as met only if met in every round.

Figures per run, after the first chunk arrived (the first tick, which waits for it, is dropped): loop
period p50/p99/max and the number of periods over 1.2/fps; ticks without a fresh action (the arm held its
last position) as a count and a share of those ticks; hold gaps (stretches of such ticks) and the
longest one (a gap still open when the episode ends is counted too); the request round trip p50/p99 as
the controller measures it (for a remote policy: observation sent -> actions back); the server's
inference time p50 (`server_timing.infer_ms`, the delay included); stale actions dropped. Ratios printed
per scenario: `async remote p99 / sync in-loop p99` (< 1: the loop no longer waits for the model) and
`p99 / (1.2/fps)` (target <= 1 at 300 ms inference). Target too: no tick without an action once the
first chunk arrived.

A run the controller stops (`PolicyTimeoutError`: no fresh action for `--timeout-s`; `RemotePolicyError`)
is reported with the ticks it made and `stopped` set; it is not retried.

How long a chunk must be: a chunk computed from the observation of tick t holds the actions for ticks
t .. t+n-1 and is absorbed k = ceil(round trip * fps) ticks later; the controller keeps one request in
flight, so the next chunk comes k ticks after that. The loop never holds only if n >= 2k: at 300 ms
and 30 fps (k = 10) n >= 20. The fixture ACT's n = 10 arrive entirely stale at 300 ms (every chunk is
dropped and the arm holds), whatever the threshold or merge rule, hence the `act50` scenario.

openpi (`--openpi-python` or JROBOT_OPENPI_PYTHON, an interpreter with `openpi-client`; its 0.1.2 on PyPI
also needs `typing_extensions`, which it does not declare): 50 calls of
openpi-client's own `WebsocketClientPolicy(host, port).infer(obs)` against the first ACT scenario's
server, one unbatched observation (224x224 uint8 frames, resized by the server, and a (6,) state),
against jrobot's `RemotePolicy.predict` on the same observation and server in the same run. Skipped when
no interpreter is given.

LeRobot (`--lerobot-python` or JROBOT_LEROBOT_PYTHON), baseline (b), variant `lerobot_async`, for the
fixture scenarios (`act`, `act50`, and `vla` unless `--vla-bundle` names another bundle): LeRobot 0.4's
own async inference on the same simulated arm, policy architecture, chunk
and delay. `benchmarks/lerobot_async.py` runs in that interpreter: `python -m
lerobot.async_inference.policy_server` in its own process (each `_predict_action_chunk` held to at least
`MS`, as `--min_latency_ms` does here) and LeRobot's `RobotClient` (its receiving thread,
`chunk_size_threshold=--threshold`, `weighted_average` aggregation) driving jrobot's `SimRobot`, which
has LeRobot's `Robot` interface (SmolVLA gets the sim's instruction as its task). `act` and `vla` use
the same checkpoint on both sides; for `act50` LeRobot draws
its own random weights for the chunk-50 architecture (timing only, as for jrobot's). That interpreter
needs grpcio, protobuf and mujoco (see `benchmarks/lerobot_async.py`). Compared: loop period p99 and
ticks without a fresh action, `lerobot_async` against `async_t50` (the same threshold).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import print_result, print_rounds, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from jrobot.serving.process import ServerProcess, serve_in_background  # noqa: E402

PARITY = REPO.parent / "shared" / "fixtures" / "parity"
ACT_CKPT = PARITY / "act_so101_tiny" / "pretrained_model"
VLA_CKPT = PARITY / "smolvla_so101_tiny" / "pretrained_model"
VLA_VLM = PARITY / "smolvla_so101_tiny" / "vlm"
VARIANTS = ("async", "async_t50", "sync", "local_async", "lerobot_async")
DEFAULT_SCENARIOS = "act@0,act@100,act@300,act50@300,vla@0"
# a run's figures (what `drive` returns and `print_run` shows), all present in every variant's run
RUN_KEYS = (
    "loop_period_ms_p50", "loop_period_ms_p99", "loop_period_ms_max", "p99_over_target", "target_ms",
    "ticks_without_fresh_action", "requests", "round_trip_ms_p50", "round_trip_ms_p99", "server_infer_ms_p50",
    "stale_actions_dropped",
)  # fmt: skip


def pct(x: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(x), q)) if len(x) else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "n/a" if x is None else format(x, spec)


# ---------------------------------------------------------------------------------------------------
# bundles


def export_lerobot(ckpt: Path, out: Path, *extra: str) -> None:
    if (out / "policy.json").is_file():
        return
    print(f"exporting {ckpt} -> {out} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "jrobot.export", "--from-lerobot", str(ckpt), *extra, "--out", str(out)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip


def build_act50(act_bundle: Path, out: Path) -> None:
    """The fixture's ACT architecture with chunk 50, random weights, the fixture's features and stats."""
    if (out / "policy.json").is_file():
        return
    print(f"building the chunk-50 ACT (random init) -> {out} ...", flush=True)
    from jrobot.bundle import read_info
    from jrobot.policies import act
    from jrobot.train.export import write_bundle

    info = read_info(act_bundle)
    cfg = act.ACTConfig(
        chunk_size=50, n_action_steps=50, dim_model=64, n_heads=4, dim_feedforward=128,
        n_encoder_layers=2, n_decoder_layers=1, latent_dim=8, n_vae_encoder_layers=2, dropout=0.0,
        pretrained_backbone_weights=None,
    )  # fmt: skip
    model = act.build(cfg, info.features, info.stats, seed=0, load_pretrained_backbone=False)
    source = {"benchmark": "benchmarks/serve.py: act_so101_tiny architecture, chunk 50, random init"}
    write_bundle(model, act, out, features=info.features, fps=info.fps, robot_type=None, source=source)


def bundle_for(name: str, work: Path, args: argparse.Namespace) -> Path:
    if name == "act":
        path = Path(args.act_bundle) if args.act_bundle else work / "bundle_act"
        export_lerobot(ACT_CKPT, path)
    elif name == "vla":
        path = Path(args.vla_bundle) if args.vla_bundle else work / "bundle_vla"
        export_lerobot(VLA_CKPT, path, "--vlm", str(VLA_VLM))
    elif name == "act50":
        path = work / "bundle_act50"
        build_act50(bundle_for("act", work, args), path)
    else:
        raise SystemExit(f"unknown bundle {name!r}: use act, act50 or vla")
    return path


# ---------------------------------------------------------------------------------------------------
# the server process


Server = ServerProcess


@contextlib.contextmanager
def serving(
    bundle: Path, min_latency_ms: float, cpus: set[int] | None = None, timeout_s: float = 300.0
) -> Iterator[ServerProcess]:
    """`python -m jrobot.serve` on `bundle`, listening on a free loopback port; stopped on exit."""
    with serve_in_background(
        bundle, f"--min_latency_ms={min_latency_ms:g}", cpus=cpus, timeout_s=timeout_s, cwd=REPO
    ) as server:
        yield server


# ---------------------------------------------------------------------------------------------------
# policies and runs


class FloorLatency:
    """A local policy whose `predict` takes at least `floor_s` (the same slow model as the server's)."""

    def __init__(self, policy: Any, floor_s: float):
        self.policy = policy
        self.floor_s = floor_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def predict(self, observation: Any, **kw: Any) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.policy.predict(observation, **kw)
        left = self.floor_s - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(left)
        return out


def drive(robot: Any, policy: Any, *, mode: str, threshold: float | None, args: argparse.Namespace) -> dict:
    """One paced episode of `args.steps` ticks; the figures after the first chunk arrived."""
    from jrobot.runtime.errors import PolicyTimeoutError
    from jrobot.runtime.loop import PolicyController, run_episode
    from jrobot.serving.client import RemotePolicyError

    robot.reset(seed=args.seed)
    task = robot.task if policy.needs_task else None
    controller = PolicyController(
        policy, mode=mode, task=task, chunk_threshold=threshold, timeout_s=args.timeout_s
    )
    policy.seed(args.seed)
    fps = int(policy.fps)
    stopped = None
    t0 = time.perf_counter()
    try:
        run_episode(robot, controller, fps=fps, max_steps=args.steps, realtime=True)
    except (PolicyTimeoutError, RemotePolicyError) as e:
        stopped = f"{type(e).__name__}: {e}"
    wall = time.perf_counter() - t0
    stats = controller.stats
    gaps = list(stats.hold_gaps_s)  # run_episode counts a hold still going when the episode ended
    controller.close()
    periods = [p * 1000 for p in stats.period_s]  # run_episode leaves out the first tick (the first chunk)
    target_ms = 1200.0 / fps
    after_first = max(stats.steps - 1, 1)
    rt = [s * 1000 for s in stats.inference_s]
    server_ms = list(getattr(policy, "server_infer_ms", []) or [])
    out = {
        "mode": mode,
        "chunk_threshold": threshold,
        "steps": stats.steps,
        "wall_s": wall,
        "stopped": stopped,
        "first_tick_ms": stats.period_s[0] * 1000 if stats.period_s else None,
        "loop_period_ms_p50": pct(periods, 50),
        "loop_period_ms_p99": pct(periods, 99),
        "loop_period_ms_max": max(periods) if periods else None,
        "periods_over_target": int(sum(p > target_ms for p in periods)),
        "target_ms": target_ms,
        "p99_over_target": (pct(periods, 99) / target_ms) if periods else None,
        "ticks_without_fresh_action": stats.starved_ticks,
        "share_without_fresh_action": stats.starved_ticks / after_first,
        "hold_gaps": len(gaps),
        "longest_hold_ms": max(gaps) * 1000 if gaps else 0.0,
        "requests": len(stats.inference_s),
        "round_trip_ms_p50": pct(rt, 50),
        "round_trip_ms_p99": pct(rt, 99),
        "server_infer_ms_p50": pct(server_ms, 50),
        "stale_actions_dropped": stats.dropped_actions,
        "overruns": stats.overruns,
    }
    return out


def drive_lerobot(name: str, delay_ms: float, args: argparse.Namespace) -> dict:
    """Baseline (b): LeRobot's policy server and RobotClient on the simulated arm (`lerobot_async.py`),
    with the same checkpoint (`act`, `vla`) or the same architecture (`act50`)."""
    payload = {
        "repo": str(REPO), "ckpt": str(ACT_CKPT), "policy_type": "act", "chunk": 10 if name == "act" else 50,
        "delay_ms": delay_ms, "fps": 30, "steps": args.steps, "seed": args.seed, "threshold": args.threshold,
        "aggregate": "weighted_average", "first_chunk_timeout_s": 120,
    }  # fmt: skip
    if name == "vla":  # the SmolVLA fixture; its config names its VLM folder relative to the fixture
        payload.update(ckpt=str(VLA_CKPT), policy_type="smolvla", chunk=8, vlm_dir=str(VLA_VLM))
    script = (Path(__file__).with_name("lerobot_async.py")).read_text()
    out = run_lerobot_script(args.lerobot_python, script, payload, timeout=600)
    if out is None:
        out = {"stopped": "the LeRobot run failed (see above)", "steps": 0}
    return {
        **dict.fromkeys(RUN_KEYS),
        "share_without_fresh_action": 0.0, "hold_gaps": 0, "longest_hold_ms": 0.0,
        **out, "mode": "lerobot async", "chunk_threshold": args.threshold,
    }  # fmt: skip


def print_run(scenario: str, variant: str, r: dict) -> None:
    stop = f"; STOPPED: {r['stopped']}" if r["stopped"] else ""
    print(
        f"[{scenario}] {variant:11s} {r['steps']} ticks: period p50 {fmt(r['loop_period_ms_p50'])} / p99 "
        f"{fmt(r['loop_period_ms_p99'])} / max {fmt(r['loop_period_ms_max'])} ms "
        f"(p99 / 1.2/fps {fmt(r['p99_over_target'], '.2f')}); no fresh action {r['ticks_without_fresh_action']} "
        f"ticks ({r['share_without_fresh_action']:.1%}), {r['hold_gaps']} hold gaps, longest "
        f"{r['longest_hold_ms']:.0f} ms; round trip p50 {fmt(r['round_trip_ms_p50'])} / p99 "
        f"{fmt(r['round_trip_ms_p99'])} ms over {r['requests']} requests; server infer p50 "
        f"{fmt(r['server_infer_ms_p50'])} ms; stale actions dropped {r['stale_actions_dropped']}{stop}",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------------
# openpi-client (separate interpreter)

OPENPI_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from openpi_client import websocket_client_policy

    a = json.loads(sys.argv[1])
    client = websocket_client_policy.WebsocketClientPolicy(host=a["host"], port=a["port"])
    meta = client.get_server_metadata()
    obs = {k: np.load(a["obs"])[k] for k in a["keys"]}
    for _ in range(a["warmup"]):
        client.infer(obs)
    times = []
    for _ in range(a["calls"]):
        t0 = time.perf_counter()
        out = client.infer(obs)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"p50_ms": float(np.percentile(times, 50) * 1e3),
                      "p99_ms": float(np.percentile(times, 99) * 1e3),
                      "actions_shape": list(np.asarray(out["actions"]).shape),
                      "server_policy_type": meta.get("policy_type")}))
    """
)


def openpi_obs(info: Any) -> dict[str, np.ndarray]:
    """One unbatched observation as openpi clients send it: 224x224 uint8 frames and a (6,) state."""
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.uniform(-30, 30, (6,)).astype(np.float32)}
    for key in info.image_shapes:
        obs[key] = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    return obs


def bench_openpi(python: str, server: Server, bundle: Path, work: Path, calls: int) -> dict[str, Any]:
    from jrobot.bundle import read_info
    from jrobot.serving.client import RemotePolicy

    obs = openpi_obs(read_info(bundle))
    np.savez(work / "openpi_obs.npz", **obs)
    args = {"host": "127.0.0.1", "port": server.port, "obs": str(work / "openpi_obs.npz"),
            "keys": list(obs), "calls": calls, "warmup": 3}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(OPENPI_SCRIPT)
    try:
        proc = subprocess.run([python, f.name, json.dumps(args)], capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(f.name)
    out: dict[str, Any] = {"calls": calls}
    if proc.returncode != 0:
        print(f"openpi-client run failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        out["openpi"] = None
    else:
        out["openpi"] = json.loads(proc.stdout.strip().splitlines()[-1])
    # the baseline: jrobot's client, the same observation (with a batch axis of 1) and server
    policy = RemotePolicy(server.url, timeout_s=30)
    batched = {k: v[None] for k, v in obs.items()}
    for _ in range(3):
        policy.predict(batched)
    policy.latencies_s.clear()
    for _ in range(calls):
        policy.predict(batched)
    policy.close()
    ms = [s * 1000 for s in policy.latencies_s]
    out["jrobot"] = {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}
    return out


# ---------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_scenarios(text: str) -> list[tuple[str, float]]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, _, ms = item.partition("@")
        out.append((name, float(ms or 0)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help="comma list of BUNDLE@DELAY_MS")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=150, help="ticks per run (150 = 5 s at 30 fps)")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of every variant per scenario, alternating (median reported)",
    )
    p.add_argument("--timeout-s", type=float, default=5.0, help="PolicyController timeout_s")
    p.add_argument("--threshold", type=float, default=0.5, help="chunk_threshold of the async_t50 variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--act-bundle", default=None, help="an exported act_so101_tiny bundle (default: export)")
    p.add_argument(
        "--vla-bundle", default=None, help="an exported smolvla_so101_tiny bundle (default: export)"
    )
    p.add_argument("--work", type=Path, default=None, help="keep bundles here (default: temp)")
    p.add_argument("--openpi-calls", type=int, default=50)
    p.add_argument("--openpi-python", default=os.environ.get("JROBOT_OPENPI_PYTHON"))
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    p.add_argument(
        "--pin",
        default=None,
        help="LOOP_CPUS:SERVER_CPUS, e.g. 0:1: pin this process (the loop) and the server to separate cores",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: at least 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; use {', '.join(VARIANTS)}")
    scenarios = parse_scenarios(args.scenarios)
    server_cpus = None
    if args.pin:
        loop_part, _, server_part = args.pin.partition(":")
        server_cpus = {int(c) for c in server_part.split(",") if c}
        os.sched_setaffinity(0, {int(c) for c in loop_part.split(",") if c})
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-serve-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)

    from jrobot.sim import gl  # noqa: F401  (decides MUJOCO_GL before mujoco renders)
    from jrobot.sim.robot import SimRobot, SimRobotConfig

    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "steps": args.steps,
        "timeout_s": args.timeout_s,
        "pin": args.pin,
        "cpu": cpu_model(),
        "load_avg_start": os.getloadavg(),
        "scenarios": {},
    }
    robot = SimRobot(SimRobotConfig(image_size=(96, 128)))
    robot.connect()
    robot.get_observation()  # the first render opens the GL context (~1 s): not a loop figure
    local: dict[Path, Any] = {}
    openpi_done = False
    try:
        for name, delay_ms in scenarios:
            key = f"{name}@{delay_ms:g}"
            bundle = bundle_for(name, work, args)
            by_round: list[dict[str, dict]] = []
            for k in range(args.rounds):
                tag = f"{key} round {k + 1}/{args.rounds}" if args.rounds > 1 else key
                runs: dict[str, dict] = {}
                remote_variants = [v for v in variants if v in ("async", "async_t50")]
                want_openpi = bool(args.openpi_python) and not openpi_done and name.startswith("act")
                if remote_variants or want_openpi:
                    from jrobot.serving.client import RemotePolicy

                    with serving(bundle, delay_ms, server_cpus) as server:
                        print(f"[{tag}] server up on {server.url} in {server.start_s:.1f} s", flush=True)
                        for v in remote_variants:
                            policy = RemotePolicy(server.url, timeout_s=args.timeout_s)
                            try:
                                threshold = args.threshold if v == "async_t50" else None
                                runs[v] = drive(robot, policy, mode="async", threshold=threshold, args=args)
                            finally:
                                policy.close()
                            print_run(tag, v, runs[v])
                        if want_openpi:
                            openpi_done = True
                            o = bench_openpi(args.openpi_python, server, bundle, work, args.openpi_calls)
                            result["openpi"] = {"scenario": key, **o}
                            op = o["openpi"]
                            ratio = op["p50_ms"] / o["jrobot"]["p50_ms"] if op else None
                            print(
                                f"[{key}] openpi-client WebsocketClientPolicy.infer round trip p50 "
                                f"{fmt(op and op['p50_ms'])} / p99 {fmt(op and op['p99_ms'])} ms vs jrobot "
                                f"RemotePolicy.predict p50 {fmt(o['jrobot']['p50_ms'])} / p99 "
                                f"{fmt(o['jrobot']['p99_ms'])} ms ({args.openpi_calls} calls, 224x224 frames); "
                                f"RATIO openpi / jrobot p50: {fmt(ratio, '.2f')}",
                                flush=True,
                            )
                local_variants = [v for v in variants if v in ("sync", "local_async")]
                if local_variants:
                    from jrobot.runtime.policy import BundlePolicy

                    if bundle not in local:
                        local[bundle] = BundlePolicy(bundle)
                        local[bundle].warmup()
                    slow = FloorLatency(local[bundle], delay_ms / 1000)
                    for v in local_variants:
                        mode = "sync" if v == "sync" else "async"
                        runs[v] = drive(robot, slow, mode=mode, threshold=None, args=args)
                        print_run(tag, v, runs[v])
                fixture = name in ("act", "act50") or (name == "vla" and not args.vla_bundle)
                if "lerobot_async" in variants and args.lerobot_python and fixture:
                    runs["lerobot_async"] = drive_lerobot(name, delay_ms, args)
                    print_run(tag, "lerobot_async", runs["lerobot_async"])
                by_round.append(runs)
            result["scenarios"][key] = summarize_scenario(key, bundle, delay_ms, by_round)
        if not args.lerobot_python:
            why = "skipped: no LeRobot environment given (--lerobot-python / JROBOT_LEROBOT_PYTHON)"
            print(f"LeRobot async inference: {why}")
            result["lerobot"] = {"skipped": why}
        if not args.openpi_python:
            print("openpi-client: skipped: no interpreter given (--openpi-python / JROBOT_OPENPI_PYTHON)")
            result["openpi"] = {"skipped": "no interpreter given"}
        print_table(result)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({**result, "load_avg_end": os.getloadavg()}, indent=2))
        print_result(result)
    finally:
        robot.disconnect()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def median_run(runs: list[dict]) -> dict:
    """The round whose loop period p99 is the median (a stopped run counts as the slowest), with every
    round's p99 and ticks without a fresh action attached."""

    def p99(r: dict) -> float:
        return (
            float("inf") if r.get("stopped") or r["loop_period_ms_p99"] is None else r["loop_period_ms_p99"]
        )

    median = dict(sorted(runs, key=p99)[len(runs) // 2])
    median["rounds_loop_period_ms_p99"] = [r["loop_period_ms_p99"] for r in runs]
    median["rounds_ticks_without_fresh_action"] = [r["ticks_without_fresh_action"] for r in runs]
    median["rounds_stopped"] = [r.get("stopped") for r in runs]
    return median


def summarize_scenario(key: str, bundle: Path, delay_ms: float, by_round: list[dict[str, dict]]) -> dict:
    """One scenario's rounds: each variant's median round, the ratios taken within each round (median
    and spread), and the async targets, met only if met in every round."""
    runs = {v: median_run([r[v] for r in by_round]) for v in by_round[0]}
    summary: dict[str, Any] = {}

    def per_round(num: str, den: str) -> list[float]:
        out = []
        for r in by_round:
            a, b = r.get(num), r.get(den)
            if a and b and a["loop_period_ms_p99"] and b["loop_period_ms_p99"]:
                out.append(a["loop_period_ms_p99"] / b["loop_period_ms_p99"])
        return out

    lr_ratios = per_round("lerobot_async", "async_t50")
    if lr_ratios:
        s = print_rounds(f"[{key}] RATIO LeRobot async p99 / jrobot async_t50 p99", lr_ratios)
        summary["lerobot_p99_over_jrobot_t50_p99"] = s["median"]
        summary["lerobot_p99_over_jrobot_t50_p99_rounds"] = s["rounds"]
        lr, t50 = runs["lerobot_async"], runs["async_t50"]
        print(
            f"[{key}] ticks without a fresh action per round: LeRobot {lr['rounds_ticks_without_fresh_action']}, "
            f"jrobot async_t50 {t50['rounds_ticks_without_fresh_action']}"
        )
    sync_ratios = per_round("async", "sync")
    if sync_ratios:
        s = print_rounds(
            f"[{key}] RATIO async remote p99 / sync in-loop p99 (< 1: the loop no longer waits)",
            sync_ratios,
        )
        summary["async_p99_over_sync_p99"] = s["median"]
        summary["async_p99_over_sync_p99_rounds"] = s["rounds"]
    else:
        print(f"[{key}] RATIO async remote p99 / sync in-loop p99: n/a (run both variants)")
    if "async" in runs:
        rounds = [r["async"] for r in by_round]
        over = [r["p99_over_target"] for r in rounds]
        ok = all(o is not None and o <= 1 and not r["stopped"] for o, r in zip(over, rounds, strict=True))
        starved = [r["ticks_without_fresh_action"] for r in rounds]
        fed = all(n == 0 and not r["stopped"] for n, r in zip(starved, rounds, strict=True))
        print(
            f"[{key}] RATIO async remote p99 / (1.2/fps = {rounds[0]['target_ms']:.1f} ms) per round: "
            f"{', '.join(fmt(o, '.2f') for o in over)} ({'met' if ok else 'NOT met'} in every round); ticks "
            f"without a fresh action after the first chunk per round: {starved} "
            f"({'met' if fed else 'NOT met'} in every round: target 0)"
        )
        summary["async_targets_met_every_round"] = ok and fed
    return {"bundle": str(bundle), "delay_ms": delay_ms, "rounds": len(by_round), "runs": runs, **summary}


def print_table(result: dict[str, Any]) -> None:
    print(
        "\n| scenario | variant | period p50 / p99 ms | p99 / (1.2/fps) | no fresh action | hold gaps "
        "(longest ms) | round trip p50 / p99 ms | server infer p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, sc in result["scenarios"].items():
        for v, r in sc["runs"].items():
            stop = " (stopped)" if r["stopped"] else ""
            each = r.get("rounds_loop_period_ms_p99", [])
            rounds = f" (rounds {', '.join(fmt(x) for x in each)})" if len(each) > 1 else ""
            print(
                f"| {key} | {v}{stop} | {fmt(r['loop_period_ms_p50'])} / {fmt(r['loop_period_ms_p99'])}{rounds} | "
                f"{fmt(r['p99_over_target'], '.2f')} | {r['ticks_without_fresh_action']} / {r['steps'] - 1} "
                f"({r['share_without_fresh_action']:.0%}) | {r['hold_gaps']} ({r['longest_hold_ms']:.0f}) | "
                f"{fmt(r['round_trip_ms_p50'])} / {fmt(r['round_trip_ms_p99'])} | "
                f"{fmt(r['server_infer_ms_p50'])} |"
            )
    print()


if __name__ == "__main__":
    main()

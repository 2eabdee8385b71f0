"""Simulation figures: scripted-expert success, physics speed, rendering speed.

    .venv/bin/python benchmarks/sim.py                 # 100 seeds, the full set of figures
    .venv/bin/python benchmarks/sim.py --seeds 20 --json out.json
    .venv/bin/python benchmarks/sim.py --only expert   # just the expert success rates

- expert: success rate of the pick-and-place expert over seeds 0..N-1 (state only, no rendering),
  mean steps to success;
- pick-color expert: the same expert on `jrobot/SO101PickColor-v0` (three cubes, the instruction names
  one) over the same seeds: success rate, wrong-object rate (another cube ever in the bin), the rate of
  episodes where a cube that was not named moved more than 5 mm, and its success ratio against the
  pick-and-place expert measured in this run (the baseline: the same plan on the one-cube task);
- physics: control steps per second (1/30 s of physics each, 7 MuJoCo steps) without rendering, and
  the real-time factor;
- render: environment steps per second with both cameras ("front", "wrist") rendered at 96x128 and at
  480x640, and the camera frames per second that makes; the GL platform used is reported.

The speeds are measured once per round (`--rounds`, default 3) and reported as the median round with
every round's value and the spread; the baseline is real time (30 control steps/s).

Single process, single thread (MuJoCo's physics is single-threaded; EGL/OSMesa rendering as chosen by
jrobot.sim.gl).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import gymnasium as gym
import numpy as np
from common import print_result, print_rounds

from jrobot.sim import gl  # importing jrobot.sim registers the envs (for their time limits)
from jrobot.sim.expert import PickPlaceExpert
from jrobot.sim.simulator import SO101Sim
from jrobot.sim.tasks import PickColorTask


def bench_expert(seeds: int) -> dict[str, float]:
    sim = SO101Sim("pick_place", cameras=())
    successes, lengths = 0, []
    t0 = time.perf_counter()
    steps = 0
    for seed in range(seeds):
        sim.reset(seed)
        expert = PickPlaceExpert(sim)
        for k in range(300):
            sim.set_joint_targets(expert.next_action())
            sim.step()
            steps += 1
            if sim.is_success():
                successes += 1
                lengths.append(k + 1)
                break
    dt = time.perf_counter() - t0
    return {
        "expert_seeds": seeds,
        "expert_success_rate": successes / seeds,
        "expert_mean_steps_to_success": float(np.mean(lengths)) if lengths else float("nan"),
        "expert_steps_per_s_with_ik": steps / dt,
        "expert_wall_s": dt,
    }


def bench_pick_color_expert(seeds: int, moved_tol: float = 0.005) -> dict[str, float]:
    """The expert on the three-cube task, stepped to the registered time limit or its first success."""
    max_steps = gym.registry["jrobot/SO101PickColor-v0"].max_episode_steps
    sim = SO101Sim("pick_color", cameras=())
    task = sim.task
    assert isinstance(task, PickColorTask)
    successes, wrong, disturbed, lengths = 0, 0, 0, []
    steps = 0
    t0 = time.perf_counter()
    for seed in range(seeds):
        sim.reset(seed)
        others = [c for c in task.colors if c != task.target_color]
        start = {c: sim.task_state()["cubes"][c]["pos"] for c in others}
        expert = PickPlaceExpert(sim)
        ever_wrong = False
        for k in range(max_steps):
            sim.set_joint_targets(expert.next_action())
            sim.step()
            steps += 1
            ever_wrong = ever_wrong or task.wrong_object(sim.data)
            if sim.is_success():
                successes += 1
                lengths.append(k + 1)
                break
        cubes = sim.task_state()["cubes"]
        moved = max(float(np.linalg.norm(cubes[c]["pos"] - start[c])) for c in others)
        wrong += ever_wrong
        disturbed += moved > moved_tol
    dt = time.perf_counter() - t0
    return {
        "pick_color_expert_seeds": seeds,
        "pick_color_expert_success_rate": successes / seeds,
        "pick_color_expert_wrong_object_rate": wrong / seeds,
        "pick_color_expert_other_cube_moved_rate": disturbed / seeds,
        "pick_color_expert_mean_steps_to_success": float(np.mean(lengths)) if lengths else float("nan"),
        "pick_color_expert_steps_per_s_with_ik": steps / dt,
        "pick_color_expert_wall_s": dt,
    }


def bench_physics(steps: int) -> dict[str, float]:
    sim = SO101Sim("pick_place", cameras=())
    sim.reset(0)
    target = sim.joint_positions()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(steps):
        if i % 30 == 0:
            target = sim.home + rng.uniform(-15, 15, size=6)
        sim.set_joint_targets(target)
        sim.step()
    dt = time.perf_counter() - t0
    return {
        "physics_control_steps_per_s": steps / dt,
        "physics_substeps_per_control_step": sim.n_substeps,
        "physics_realtime_factor": steps * sim.control_dt / dt,
    }


def bench_render(height: int, width: int, steps: int) -> dict[str, float]:
    sim = SO101Sim("pick_place", image_size=(height, width))
    sim.reset(0)
    sim.images()  # create the GL context outside the timing
    target = sim.joint_positions()
    t0 = time.perf_counter()
    for i in range(steps):
        target[0] = 20.0 * np.sin(i / 15.0)
        sim.set_joint_targets(target)
        sim.step()
        sim.images()
    dt = time.perf_counter() - t0
    sim.close()
    tag = f"{height}x{width}"
    return {f"render_{tag}_env_steps_per_s": steps / dt, f"render_{tag}_frames_per_s": 2 * steps / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--physics-steps", type=int, default=3000)
    p.add_argument("--render-steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="rounds of the physics and render speeds")
    p.add_argument("--json", type=str, default=None, help="also write the figures to this file")
    p.add_argument(
        "--only",
        nargs="+",
        choices=("expert", "physics", "render"),
        default=("expert", "physics", "render"),
        help="the groups of figures to measure (default: all)",
    )
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: at least 1")

    figures: dict[str, object] = {
        "load_avg_start": os.getloadavg(),
        "gl_backend": gl.gl_backend(),
        "machine": platform.processor() or platform.machine(),
    }
    if "expert" in args.only:
        figures.update(bench_expert(args.seeds))
        figures.update(bench_pick_color_expert(args.seeds))
        base = figures["expert_success_rate"]
        figures["pick_color_vs_pick_place_expert_success_ratio"] = (
            figures["pick_color_expert_success_rate"] / base if base else float("nan")
        )
    # speeds drift by up to +-20% over minutes on a shared VM: each is measured once per round, the
    # rounds alternate the measurements, and the median round is reported with every round's value
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds if {"physics", "render"} & set(args.only) else 0):
        r: dict[str, float] = {}
        if "physics" in args.only:
            r.update(bench_physics(args.physics_steps))
        if "render" in args.only:
            r.update(bench_render(96, 128, args.render_steps))
            r.update(bench_render(480, 640, max(30, args.render_steps // 3)))
        rounds.append(r)
    if rounds:
        for key in rounds[0]:
            if key == "physics_substeps_per_control_step":
                figures[key] = rounds[0][key]
                continue
            values = [r[key] for r in rounds]
            if key != "physics_realtime_factor":  # printed below as the RATIO line
                print_rounds(key, values, spec=".1f")
            figures[key] = float(statistics.median(values))
            figures[f"{key}_rounds"] = values
    if "physics" in args.only:
        print_rounds(
            "RATIO physics speed / real time (30 control steps/s)",
            [r["physics_realtime_factor"] for r in rounds],
            spec=".0f",
            target=1.0,
        )
    if "render" in args.only:
        print_rounds(
            "RATIO 2 cameras 96x128 rendered env steps/s / real time (30 fps)",
            [r["render_96x128_env_steps_per_s"] / 30 for r in rounds],
            spec=".1f",
            target=1.0,
        )
    for k, v in figures.items():
        if not k.endswith("_rounds") and k != "load_avg_start":
            print(f"{k:45s} {v:.4g}" if isinstance(v, float) else f"{k:45s} {v}")
    print_result(figures)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()

"""The live rerun view must not slow the control loop (issue 18): loop timing with and without it.

    .venv/bin/python benchmarks/display_loop.py                     # ~1 min on 2 cores
    .venv/bin/python benchmarks/display_loop.py --seconds 20 --size 480x640 --rounds 3

The loop is `jrobot.recording.teleoperate.teleop_loop` at 30 fps, paced in real time, driving the simulated SO-101
(two rendered cameras of --size) from its scripted expert: each tick reads the observation (rendering
both cameras), asks the teleoperator and sends the action, as a real arm's teleoperation does. The
view writes to an .rrd file (`--display_save`, the headless stand-in for a viewer; a spawned viewer
or a remote one cost the loop the same: a queue put). Each round runs both variants in alternating
order; the table holds medians over rounds of the work per tick (p50, p99, ms, the sleep excluded),
overruns, and the steps the view showed and dropped. Baseline: the same loop without the view, in the
same round; the ratios (p99 and p50 with / without) are taken within each round, and the median
round is reported with every round's value and the spread (`common.print_rounds`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import print_result, print_rounds

from jrobot.display import RerunDisplay
from jrobot.recording.teleoperate import teleop_loop
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig


def one_run(size: tuple[int, int], seconds: float, view: bool, folder: Path) -> dict:
    robot = SimRobot(SimRobotConfig(image_size=size))
    teleop = SimExpertTeleop(robot)
    robot.connect()
    teleop.connect()
    viewer = RerunDisplay("bench", save=folder / f"v{time.monotonic_ns()}.rrd") if view else None
    try:
        stats = teleop_loop(teleop, robot, 30.0, seconds, viewer=viewer)
    finally:
        if viewer is not None:
            viewer.close()
        teleop.disconnect()
        robot.disconnect()
    return {
        "p50": stats.loop_ms_p50,
        "p99": stats.loop_ms_p99,
        "overruns": stats.overruns,
        "steps": stats.steps,
        "shown": viewer.logged if viewer else 0,
        "dropped": viewer.dropped if viewer else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="240x320", help="HxW of each of the two cameras")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    size = tuple(int(v) for v in args.size.split("x"))
    result: dict = {"load_avg_start": os.getloadavg(), "cores": os.cpu_count(), "size": list(size)}
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for view in (False, True) if r % 2 == 0 else (True, False):
                runs[view].append(one_run(size, args.seconds, view, Path(tmp)))
    med = {v: {k: statistics.median(x[k] for x in runs[v]) for k in runs[v][0]} for v in runs}
    print(
        f"teleop loop, sim SO-101, 2 cameras {size[0]}x{size[1]}, 30 fps, {args.seconds:g} s x {args.rounds} rounds"
    )
    print("| view | work/tick p50 ms | p99 ms | overruns | steps | shown | dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for view, label in ((False, "none (baseline)"), (True, "rerun to .rrd")):
        m = med[view]
        print(
            f"| {label} | {m['p50']:.2f} | {m['p99']:.2f} | {m['overruns']:g} | {m['steps']:g} | "
            f"{m['shown']:g} | {m['dropped']:g} |"
        )
    ratios = {
        q: print_rounds(
            f"RATIO work/tick {q} with the view / without (same round)",
            [w[q] / wo[q] for w, wo in zip(runs[True], runs[False], strict=True)],
        )
        for q in ("p99", "p50")
    }
    result.update(
        seconds=args.seconds,
        rounds=args.rounds,
        without_view=runs[False],
        with_view=runs[True],
        ratio_p99=ratios["p99"]["median"],
        ratio_p99_rounds=ratios["p99"]["rounds"],
        ratio_p50=ratios["p50"]["median"],
        ratio_p50_rounds=ratios["p50"]["rounds"],
    )
    print_result(result)


if __name__ == "__main__":
    main()

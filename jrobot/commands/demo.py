"""`make demo` / `python -m jrobot.demo`: the whole jrobot loop on the MuJoCo SO-101, on a laptop CPU.

    python -m jrobot.demo [--out outputs/demo] [--episodes 60] [--train-steps 1500] [--eval-episodes 50]
    python -m jrobot.demo --policy smolvla [--out outputs/demo_vla]        # `make demo-vla`

1. record   scripted demonstrations in the simulator (`jrobot.record`, two cameras), into a LeRobot
            v3.0 dataset that LeRobot itself can load: pick-and-place of one cube for ACT; for the VLA,
            three coloured cubes and an instruction per episode naming the one to put in the bin
            (`jrobot/SO101PickColor-v0`), recorded as the episode's task
2. shards   convert the dataset into ArrayRecord training shards (`data_tools.build_shards`)
3. train    the CPU-sized policy (`configs/act_so101_sim_cpu.py`, `configs/smolvla_so101_sim_cpu.py`)
            with the grain pipeline and orbax; it reads what a real arm has: the two cameras, the joint
            positions, and for the VLA the instruction
4. export   a self-contained policy bundle (`jrobot.export`)
5. eval     50 seeded episodes in the simulator through the real-time runtime (`jrobot.eval`), with
            videos; the VLA is also evaluated with each episode's instruction replaced by one naming
            another cube, which it should follow rather than repeat what the scene suggests

It prints the success rate and where the videos are; `--out DIR` also gets `report.json` with the
success rate (and for the VLA the wrong-object rate and each episode's instruction and outcome), the
features the policy reads and the time each stage took. Each stage is the same code the command-line
tools run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from jrobot.cli import Binder, run_tool
from jrobot.train.demo import DemoOptions, run_demo

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    binder = Binder.from_argv(argv)
    args = binder.build(DemoOptions)
    binder.finish()
    report = run_demo(args)
    out = Path(report["out"])
    print(
        f"\njrobot demo ({args.policy}): {report['summary']} over {report['stages']['eval']['episodes']} "
        f"simulated episodes, total {report['total_seconds'] / 60:.1f} min\n"
        f"  dataset (LeRobot v3.0): {out / 'dataset'}\n  policy bundle: {out / 'bundle'}\n"
        f"  videos: {out / 'eval' / 'videos'}\n  report: {out / 'report.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

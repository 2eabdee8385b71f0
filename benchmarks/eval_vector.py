"""Vectorized evaluation (issue 18): episodes per minute of `jrobot.eval` with N envs at once vs one.

    .venv/bin/python benchmarks/eval_vector.py                          # ~2 min on 2 cores
    .venv/bin/python benchmarks/eval_vector.py --envs 1,2,4,8 --episodes 32 --rounds 3
    .venv/bin/python benchmarks/eval_vector.py --bundle outputs/demo/bundle --max-steps 0   # full episodes

The policy is the LeRobot ACT parity checkpoint (`act_so101_tiny`: d=64, ResNet-18 on 2 cameras
96x128, chunk 10, n_action_steps 10), exported with `python -m jrobot.export --from-lerobot`, or any
bundle given with `--bundle`. The episodes are `jrobot/SO101PickPlace-v0` from seed 100000, cut at
`--max-steps` (0: the env's own limit). The parity policy is untrained, so every episode runs to the
cut: all N envs ask for a chunk at the same steps and every policy call is a full batch of N.

Each run is `jrobot.runtime.evaluate.evaluate(policy, episodes=E, num_envs=N, videos=--videos)` end to end: worker
processes started and closed inside it (for N > 1; N = 1 runs the env in this process, as before), one
batched `predict` per step for the envs that need a chunk. Batch sizes 1..N are compiled before the
runs, so no run pays for XLA compilation. Variants per N > 1: `batched` (the default) and `exact`
(`--exact`: one call per env, bit-for-bit N = 1's actions). Each round runs every (N, variant) once,
in alternating order; the rate shown is the median episodes per minute over the rounds.

Fixed cost: each round also times `evaluate` of N one-step episodes on N envs (starting the workers,
their envs and renderers, closing them; for N = 1 the env in this process, after a first one that
paid what a process pays once: the GL platform probe), and the steady rate is E / (run time - that
fixed cost): what a long evaluation approaches.

Baseline: N = 1 measured in the same round; the ratio is episodes/min(N) / episodes/min(1), end to end
(and steady), taken within each round, and the median round is reported with every round's ratio and
the spread (`common.print_rounds`). The script also checks what vectorized evaluation promises: the per-episode outcomes (success, steps, success
step) of every run equal N = 1's, and reports the largest difference of an executed action from
N = 1's (degrees; 0 for `exact`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the compile times printed below are compiles, not loads from a cache an earlier run filled
os.environ["JROBOT_COMPILE_CACHE"] = "0"
from common import print_result, print_rounds

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JROBOT_SHARED", REPO.parent / "shared"))
ACT_FIXTURE = SHARED / "fixtures" / "parity" / "act_so101_tiny" / "pretrained_model"


def export_act(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "jrobot.export", "--from-lerobot", str(ACT_FIXTURE), "--out", str(out)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return out


def fixed_cost(policy, *, n: int, args) -> float:
    """Seconds of an evaluation that are not its steps: n one-step episodes on n envs."""
    from jrobot.runtime.evaluate import evaluate

    t0 = time.perf_counter()
    evaluate(policy, env_id=args.env, episodes=n, seed=100_000, max_steps=1, videos=False, num_envs=n)
    return time.perf_counter() - t0


def run_once(policy, *, n: int, exact: bool, args) -> tuple[dict, dict[int, np.ndarray]]:
    from jrobot.runtime.evaluate import evaluate

    actions: dict[int, list[np.ndarray]] = {}
    out = Path(tempfile.mkdtemp(prefix="eval_vector_")) if args.videos else None
    t0 = time.perf_counter()
    try:
        report = evaluate(
            policy,
            env_id=args.env,
            episodes=args.episodes,
            seed=100_000,
            max_steps=args.max_steps or None,
            videos=args.videos,
            out=out,
            num_envs=n,
            exact=exact,
            on_action=lambda ep, _step, a: actions.setdefault(ep, []).append(a),
        )
        report["wall_total_s"] = time.perf_counter() - t0
    finally:
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
    return report, {ep: np.stack(a) for ep, a in actions.items()}


def outcome(report: dict) -> list[tuple]:
    return [(e["seed"], e["success"], e["steps"], e["success_step"]) for e in report["episodes"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="a policy bundle (default: export the ACT parity fixture)")
    ap.add_argument("--env", default="jrobot/SO101PickPlace-v0")
    ap.add_argument("--envs", default="1,2,4", help="the N to measure; 1 (the baseline) is always run")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--max-steps", type=int, default=100, help="episode cut (0: the env's own limit)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default="batched,exact", help="for N > 1: batched, exact")
    ap.add_argument("--videos", action="store_true", help="also write the videos (into a temp dir)")
    args = ap.parse_args()
    result: dict = {"load_avg_start": os.getloadavg(), "cpu": platform.processor() or platform.machine()}
    result["cores"] = os.cpu_count()

    import logging

    logging.getLogger("jrobot.eval").setLevel(logging.WARNING)
    from jrobot.runtime.policy import BundlePolicy

    tmp = tempfile.TemporaryDirectory(prefix="eval_vector_")
    bundle = args.bundle or export_act(Path(tmp.name) / "act")
    policy = BundlePolicy(bundle)
    envs = sorted({1, *(int(x) for x in args.envs.split(","))})
    variants = [v for v in args.variants.split(",") if v]
    t0 = time.perf_counter()
    for b in range(1, max(envs) + 1):
        policy.warmup(batch=b)
    result["compile_s"] = round(time.perf_counter() - t0, 2)
    fixed_cost(policy, n=1, args=args)  # once per process: the GL platform probe, the first renderer
    runs = [(1, "batched")] + [(n, v) for n in envs if n > 1 for v in variants]
    print(
        f"{bundle.name}: {args.episodes} episodes of {args.max_steps or 'the env limit of'} steps on {args.env}, "
        f"videos {'on' if args.videos else 'off'}; runs {runs}, {args.rounds} rounds; "
        f"{os.cpu_count()} cores, load {result['load_avg_start'][0]:.2f}"
    )
    epm: dict[tuple[int, str], list[float]] = {r: [] for r in runs}
    steady: dict[tuple[int, str], list[float]] = {r: [] for r in runs}
    fixed: dict[int, list[float]] = {n: [] for n in envs}
    base_outcome, base_actions = None, None
    agree: dict[tuple[int, str], bool] = {}
    max_diff: dict[tuple[int, str], float] = {}
    batch_mean: dict[tuple[int, str], float | None] = {}
    for rnd in range(args.rounds):
        order = runs if rnd % 2 == 0 else list(reversed(runs))
        for n in envs if rnd % 2 == 0 else reversed(envs):
            fixed[n].append(fixed_cost(policy, n=n, args=args))
        for n, variant in order:
            report, actions = run_once(policy, n=n, exact=variant == "exact", args=args)
            epm[(n, variant)].append(60.0 * report["num_episodes"] / report["wall_total_s"])
            busy_s = max(report["wall_total_s"] - fixed[n][-1], 1e-9)
            steady[(n, variant)].append(60.0 * report["num_episodes"] / busy_s)
            batch_mean[(n, variant)] = report["latency"]["batch_size_mean"]
            if (n, variant) == (1, "batched") and base_outcome is None:
                base_outcome, base_actions = outcome(report), actions
            if base_outcome is not None:
                same = outcome(report) == base_outcome
                agree[(n, variant)] = agree.get((n, variant), True) and same
                d = max(float(np.abs(actions[e] - base_actions[e]).max()) for e in base_actions)
                max_diff[(n, variant)] = max(max_diff.get((n, variant), 0.0), d)
            print(
                f"  round {rnd + 1}: N={n} {variant:7s} {epm[(n, variant)][-1]:7.1f} episodes/min "
                f"({report['wall_total_s']:.1f} s, of which fixed {fixed[n][-1]:.1f} s; "
                f"mean batch {report['latency']['batch_size_mean']})"
            )
    base = statistics.median(epm[(1, "batched")])
    figures = {}
    print(f"median over {args.rounds} rounds (baseline N=1 in this run: {base:.1f} episodes/min):")
    for n, variant in runs:
        med = statistics.median(epm[(n, variant)])
        med_steady = statistics.median(steady[(n, variant)])
        label = f"N={n} {variant}"
        within_round = {}
        for what, rates in (("episodes/min", epm), ("steady episodes/min", steady)):
            values = [a / b for a, b in zip(rates[(n, variant)], rates[(1, "batched")], strict=True)]
            if n == 1:  # the baseline itself
                within_round[what] = {"median": 1.0, "rounds": values}
            else:
                within_round[what] = print_rounds(f"  RATIO {label} / N=1, {what} (same round)", values)
        ratio, ratio_steady = within_round["episodes/min"], within_round["steady episodes/min"]
        key = f"n{n}" + ("" if variant == "batched" else f"_{variant}")
        figures[key] = {
            "episodes_per_min": round(med, 1),
            "rounds": [round(x, 1) for x in epm[(n, variant)]],
            "ratio_vs_n1": round(ratio["median"], 2),
            "ratio_vs_n1_rounds": [round(x, 2) for x in ratio["rounds"]],
            "fixed_s": round(statistics.median(fixed[n]), 2),
            "steady_episodes_per_min": round(med_steady, 1),
            "steady_ratio_vs_n1": round(ratio_steady["median"], 2),
            "mean_batch": batch_mean[(n, variant)],
            "same_outcomes_as_n1": agree.get((n, variant)),
            "max_action_diff_vs_n1": max_diff.get((n, variant)),
        }
        print(
            f"  {label:16s} {med:7.1f} episodes/min  ratio {ratio['median']:.2f}x  "
            f"(fixed {statistics.median(fixed[n]):.1f} s; steady {med_steady:.1f}/min, "
            f"{ratio_steady['median']:.2f}x)  outcomes as N=1: {agree.get((n, variant))}  "
            f"max |action - N=1's| {max_diff.get((n, variant), 0):.2g}"
        )
    result.update(
        bundle=str(bundle), env=args.env, episodes=args.episodes, max_steps=args.max_steps,
        videos=args.videos, figures=figures,
    )  # fmt: skip
    tmp.cleanup()
    print_result(result)


if __name__ == "__main__":
    main()

"""What every benchmark shares: running the LeRobot side in its own interpreter, the median of
alternating rounds, this CPU's matmul and memory-read ceilings, and the final report.

LeRobot (and torch) never enter the jrobot process: each benchmark hands a self-contained script to
the interpreter of a separate LeRobot venv and reads one JSON line back. Keeping that in one place
means every benchmark fails the same readable way when the LeRobot side breaks.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_lerobot_script(python: str, script: str, args: dict[str, Any], timeout: float = 3600) -> Any | None:
    """Runs `script` under `python` with `args` as JSON in argv[1]; returns its last stdout line, parsed.

    Returns None (and prints the tail of its stderr) when the LeRobot side fails, so the benchmark can
    still print its own figures with the ratio marked n/a.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [python, f.name, json.dumps(args)], capture_output=True, text=True, timeout=timeout
        )
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        print(f"LeRobot run failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_round(
    name: str,
    rounds: list[dict[str, Any]],
    *,
    what: str,
    fallback: Callable[[dict[str, Any]], float],
    target: float | None,
    lerobot_given: bool,
    note: Callable[[dict[str, Any]], str] = lambda r: "",
) -> dict[str, Any]:
    """The round to report out of `rounds` that alternated LeRobot and jrobot; prints the RATIO line.

    This VM's speed drifts by up to +-20% over minutes, so the ratio is taken within each round and
    the median round by `ratio` is reported, with every round's ratio and the verdict against `target`.
    Without any ratio (no LeRobot interpreter, or its run failed) it is the median round by `fallback`.
    """
    measured = [r for r in rounds if r.get("ratio") is not None]
    if measured:
        median = sorted(measured, key=lambda r: r["ratio"])[len(measured) // 2]
        each = ", ".join(f"{r['ratio']:.2f}" for r in measured)
        verdict = ""
        if target is not None:
            verdict = f" (target >= {target:g}x) [{'met' if median['ratio'] >= target else 'NOT met'}]"
        print(
            f"[{name}] RATIO {what} (median of {len(measured)} rounds: {each}): "
            f"{median['ratio']:.2f}x{note(median)}{verdict}"
        )
        return median
    why = "LeRobot run failed" if lerobot_given else "set JROBOT_LEROBOT_PYTHON to compare"
    print(f"[{name}] RATIO vs LeRobot: n/a ({why})")
    return sorted(rounds, key=fallback)[len(rounds) // 2]


def print_rounds(
    label: str,
    values: Sequence[float],
    *,
    spec: str = ".2f",
    target: float | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Prints one figure measured once per round: its median, every round's value and the spread.

    For benchmarks whose baseline is a ceiling measured in the same round (not LeRobot): the ratio
    is taken within each round, as `median_round` does, and the verdict is the median's. The spread,
    (max - min) / median, says how far one run on this VM can be trusted.
    """
    if not values:
        raise ValueError(f"{label}: no rounds to summarize")
    median = float(statistics.median(values))
    spread = (max(values) - min(values)) / abs(median) if median else 0.0
    each = ", ".join(format(v, spec) for v in values)
    verdict = ""
    met = None
    if target is not None:
        met = median >= target if higher_is_better else median <= target
        sign = ">=" if higher_is_better else "<="
        verdict = f" (target {sign} {target:g}) [{'met' if met else 'NOT met'}]"
    print(f"{label}: {median:{spec}} (median of {len(values)} rounds: {each}; spread {spread:.0%}){verdict}")
    return {"median": median, "rounds": list(values), "spread": spread, "met": met}


def print_result(result: dict[str, Any]) -> None:
    """Prints the load averages (figures taken under load are bounds, not measurements) and the JSON line."""
    result["load_avg_end"] = os.getloadavg()
    start = result.get("load_avg_start", result["load_avg_end"])
    print(f"load average at start/end: {start[0]:.2f} / {result['load_avg_end'][0]:.2f}")
    print(json.dumps(result))


def matmul_ceiling_gflops() -> float:
    """This CPU's float32 matmul ceiling under XLA: the best of a few large square-ish products.

    Measured in the same run as the figure it scales, so achieved FLOP/s are stated as a share of what
    this machine does at its best, not of a datasheet number.
    """
    import jax
    import jax.numpy as jnp

    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (3072, 768, 3072), (1024, 3072, 768)):
        a, b = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
        f = jax.jit(lambda x, y: x @ y)
        f(a, b).block_until_ready()
        t0 = time.perf_counter()
        for _ in range(10):
            r = f(a, b)
        r.block_until_ready()
        best = max(best, 2 * m * k * n * 10 / (time.perf_counter() - t0) / 1e9)
    return best


def memory_read_gbps(nbytes: int, calls: int = 10) -> float:
    """This machine's streaming read bandwidth under XLA: a jitted sum over `nbytes` of float32 (median).

    A batch-1 network whose weights do not fit the caches has to read every weight once per call, so
    weight bytes / this bandwidth is the fastest that call can be on this machine.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    a = jnp.ones((max(1, nbytes // 4),), jnp.float32)
    f = jax.jit(jnp.sum)
    f(a).block_until_ready()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return a.nbytes / float(np.median(times)) / 1e9

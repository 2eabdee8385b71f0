"""benchmarks/gpu_suite.py runs end to end on this CPU at its smoke sizes (the GPU figures come from a
GPU machine): data recorded on the spot, the trainer's own setup and loader, cost analysis, export and
the runtime's inference. It checks that every figure is produced, never what it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _suite(tmp_path: Path, *flags: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--small", "--out", str(tmp_path), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(result: dict, names: list[str]) -> None:
    assert set(result["train"]) == set(names)
    for name, fig in result["train"].items():
        assert fig["step_ms"] > 0 and fig["compile_s"] > 0 and fig["params"] > 0, name
        assert 0.0 <= fig["data_wait_share"] <= 1.0, name
        assert fig["gflop_per_step"] and fig["gflop_per_step"] > 0, name
        assert fig["mfu"] is None  # a CPU has no bf16 peak in the table
    for name in (n for n in names if n != "act8"):
        assert result["inference"][name]["p50_ms"] > 0


def test_the_suite_runs_one_policy_on_this_cpu(tmp_path):
    _check(_suite(tmp_path, "--policies", "diffusion", "--no-act-batch8"), ["diffusion"])


@pytest.mark.slow
def test_the_suite_runs_every_policy_on_this_cpu(tmp_path):
    result = _suite(tmp_path)
    _check(result, ["act", "diffusion", "smolvla", "act8"])
    assert result["act_batch8_vs_lerobot_a100"] > 0

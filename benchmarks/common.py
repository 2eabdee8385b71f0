"""What every benchmark shares: running the LeRobot side in its own interpreter, and the final report.

LeRobot (and torch) never enter the jrobot process: each benchmark hands a self-contained script to
the interpreter of a separate LeRobot venv and reads one JSON line back. Keeping that in one place
means every benchmark fails the same readable way when the LeRobot side breaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


def print_result(result: dict[str, Any]) -> None:
    """Prints the load averages (figures taken under load are bounds, not measurements) and the JSON line."""
    result["load_avg_end"] = os.getloadavg()
    start = result.get("load_avg_start", result["load_avg_end"])
    print(f"load average at start/end: {start[0]:.2f} / {result['load_avg_end'][0]:.2f}")
    print(json.dumps(result))

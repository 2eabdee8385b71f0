"""Training logs: a console progress line and wandb (offline unless a project is configured).

The progress line shows loss, grad norm, learning rate, steps/s and the share of wall time the loop
spent waiting for the input pipeline — the number that says whether the accelerator is starved.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections

from jrobot.train.config_util import as_plain_dict, setting

log = logging.getLogger("jrobot.train")


class MetricsLogger:
    def __init__(
        self, config: ml_collections.ConfigDict, workdir: Path, *, total_steps: int, is_main: bool = True
    ):
        self.total_steps = total_steps
        self.is_main = is_main
        self._t0 = time.perf_counter()
        self._step0 = 0
        self._wait0 = 0.0
        self._run = None
        self._jsonl = None
        if not is_main:
            return
        self._jsonl = open(Path(workdir) / "metrics.jsonl", "a")  # noqa: SIM115 (kept open for the run)
        wb = as_plain_dict(setting(config, "wandb"))
        mode = wb.get("mode") or ("online" if wb.get("project") else "offline")
        if os.environ.get("WANDB_MODE"):
            mode = os.environ["WANDB_MODE"]
        if mode != "disabled":
            import wandb

            self._run = wandb.init(
                project=wb.get("project") or "jrobot",
                entity=wb.get("entity"),
                name=wb.get("name"),
                mode=mode,
                dir=str(workdir),
                config=config.to_dict(),
                resume="allow",
                id=wb.get("id"),
            )

    def start_window(self, step: int, wait_s: float) -> None:
        self._t0, self._step0, self._wait0 = time.perf_counter(), step, wait_s

    def log(self, step: int, metrics: dict[str, float], wait_s: float) -> dict[str, float]:
        """Logs one window's metrics; returns them with the window's steps/s and data-wait share."""
        now = time.perf_counter()
        dt = max(now - self._t0, 1e-9)
        steps = step - self._step0
        rate = steps / dt
        data_share = (wait_s - self._wait0) / dt
        self._t0, self._step0, self._wait0 = now, step, wait_s
        record = {"step": step, **metrics, "steps_per_s": rate, "data_wait_share": data_share}
        if not self.is_main:
            return record
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        line = (
            f"step {step}/{self.total_steps} | loss {metrics.get('loss', float('nan')):.4f} | "
            f"grad_norm {metrics.get('grad_norm', float('nan')):.3g} | lr {metrics.get('lr', float('nan')):.2e} | "
            f"{rate:.2f} steps/s | data wait {100 * data_share:.0f}% | eta {_fmt_time(eta)}"
        )
        print(line, file=sys.stderr, flush=True)
        self._write(record)
        return record

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        print(
            f"step {step} | " + " | ".join(f"{k} {v:.3f}" for k, v in metrics.items()),
            file=sys.stderr,
            flush=True,
        )
        self._write({"step": step, **metrics})

    def _write(self, record: dict[str, Any]) -> None:
        import json

        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        if self._run is not None:
            self._run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._run is not None:
            self._run.finish()


def _fmt_time(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"

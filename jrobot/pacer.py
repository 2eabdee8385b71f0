"""The one control-loop pacer: record, teleoperate, the policy runtime and the benchmarks tick it.

    pacer = Pacer(fps=30, realtime=True)
    while ...:
        obs = robot.get_observation(); ...; robot.send_action(action)
        pacer.tick()  # sleeps until the next tick; raises a pending Ctrl-C/SIGTERM here

Ticks are on an absolute schedule (`start + k / fps`), so a short late step is made up by a shorter
sleep after it instead of shifting every later tick (a relative `sleep(period - work)` drifts by the
work's jitter). A step so late that whole ticks went by skips them rather than bursting through them:
they are counted in `dropped` (the frames a recording at `fps` lost). `overruns` counts paced steps
whose own work, from the previous tick's wake-up to this tick, took longer than one period.

`realtime=False` never sleeps (the simulator advances one period per action, so it runs as fast as
the CPU allows); `elapsed_s` is then the simulated time, `ticks / fps`.

Every tick is also the loop's safe point for stopping: `jrobot.hw.safety.check_stop()` raises a
signal that `graceful_stop()` deferred, before and after the sleep.

Nothing here imports jax: recording uses it.
"""

from __future__ import annotations

import time

from jrobot.hw.safety import check_stop


class Pacer:
    """Paces a loop at `fps` and keeps its timing counts; see the module docstring."""

    def __init__(self, fps: float, *, realtime: bool = True) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.period = 1.0 / self.fps
        self.realtime = bool(realtime)
        self.ticks = 0
        self.dropped = 0
        self.overruns = 0
        self.start()

    def start(self) -> None:
        """Restart the schedule and the counts from now (e.g. at the start of each episode)."""
        now = time.perf_counter()
        self.t_start = now
        self._next = now
        self._woke = now
        self.ticks = self.dropped = self.overruns = 0

    @property
    def elapsed_s(self) -> float:
        """Wall time since `start()` when paced; simulated time (ticks / fps) when not."""
        return time.perf_counter() - self.t_start if self.realtime else self.ticks * self.period

    @property
    def wall_s(self) -> float:
        """Wall time since `start()`, paced or not."""
        return time.perf_counter() - self.t_start

    def tick(self) -> None:
        """End of one step: sleep until the next tick (when paced); raise a pending stop."""
        check_stop()
        self.ticks += 1
        now = time.perf_counter()
        if self.realtime:
            if now - self._woke > self.period:
                self.overruns += 1
            self._next += self.period
            delay = self._next - now
            if delay > 0:
                time.sleep(delay)
            elif delay < -self.period:
                missed = int(-delay // self.period)
                self.dropped += missed
                self._next += missed * self.period
            check_stop()
        self._woke = time.perf_counter()

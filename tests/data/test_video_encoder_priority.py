"""The encoder threads yield to the recording: never real-time, 10 nice levels below the process."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from jrobot.data.video.encode import (
    ENCODER_NICE_INCREMENT,
    CameraEncoder,
    VideoOptions,
    demote_realtime_threads,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread scheduling is Linux's"
)


def threads() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def test_a_real_time_thread_is_put_back_under_the_normal_policy():
    ready, done = threading.Event(), threading.Event()
    tids: dict[str, int] = {}

    def fifo():
        tids["fifo"] = threading.get_native_id()
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except PermissionError:
            tids.pop("fifo")
        ready.set()
        done.wait(5)

    def normal():
        tids["normal"] = threading.get_native_id()
        done.wait(5)

    workers = [threading.Thread(target=fifo), threading.Thread(target=normal)]
    for w in workers:
        w.start()
    ready.wait(5)
    time.sleep(0.05)
    try:
        if "fifo" not in tids:
            pytest.skip("this process may not make a thread real-time (not root, no CAP_SYS_NICE)")
        before = os.getpriority(os.PRIO_PROCESS, tids["normal"])
        assert demote_realtime_threads({tids["fifo"], tids["normal"], 2**30}, nice=7) == 1
        assert os.sched_getscheduler(tids["fifo"]) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, tids["fifo"]) == 7
        assert os.getpriority(os.PRIO_PROCESS, tids["normal"]) == before  # not real-time: untouched
    finally:
        done.set()
        for w in workers:
            w.join()


def test_encoder_threads_run_below_the_recording_and_never_real_time(tmp_path):
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = threads()
    enc = CameraEncoder(
        tmp_path / "c.mp4", key="c", height=96, width=128, fps=30, options=VideoOptions(), durable=False
    )
    try:
        rng = np.random.default_rng(0)
        for _ in range(4):
            enc.put(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        deadline = time.monotonic() + 20
        while (enc.pending() or enc._frames < 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        new = threads() - before
        seen = {}
        for tid in new:
            try:
                seen[tid] = (os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid))
            except OSError:
                continue  # exited meanwhile
        # the encoder's own thread and SVT-AV1's workers (as root SVT-AV1 makes those SCHED_FIFO 99)
        assert len(seen) >= 2, seen
        assert all(policy == os.SCHED_OTHER for policy, _ in seen.values()), seen
        assert all(nice == min(19, base + ENCODER_NICE_INCREMENT) for _, nice in seen.values()), seen
    finally:
        assert enc.finish().num_frames == 4

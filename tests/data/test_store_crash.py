"""SIGKILL a recording process at random moments: every saved episode must stay loadable, and the
next writer must discard the interrupted episode and carry on.

The writer runs in a forked child (imports already done, so a cycle is fast) recording short
episodes with two 32x48 cameras, so a kill often lands inside a save, the background video packing
or the recovery at startup. After each kill the dataset is opened read-only, exactly as left, and
every episode the child reported saved is checked frame by frame.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest
from store_synth import check_invariants, episode_problems, frame, record_forever

from jrobot.data import DatasetWriter, open_dataset

H, W = 32, 48  # must match store_synth.record_forever
KILLS = int(os.environ.get("JROBOT_KILLS", "24"))  # raise for a longer soak
SEED = int(os.environ.get("JROBOT_KILL_SEED", "1234"))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _reported(progress: Path) -> dict[int, int]:
    if not progress.exists():
        return {}
    return {
        int(a): int(b)
        for a, b in (line.split() for line in progress.read_text().splitlines() if line.strip())
    }


def test_sigkill_at_random_moments_keeps_saved_episodes(tmp_path, stripes):
    root, progress, log = tmp_path / "ds", tmp_path / "progress", tmp_path / "recovery.log"
    ctx = mp.get_context("fork")
    rng = random.Random(SEED)
    verified = 0
    start = time.monotonic()
    for k in range(KILLS):
        p = ctx.Process(target=record_forever, args=(str(root), str(progress), str(log), SEED + k))
        p.start()
        time.sleep(rng.uniform(0.05, 0.8))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        error = Path(str(log) + ".error")
        assert not error.exists(), error.read_text()
        assert p.exitcode == -signal.SIGKILL
        if not (root / "meta/info.json").exists():
            continue  # killed before the dataset existed
        reported = _reported(progress)
        ds = open_dataset(root)  # the folder exactly as the killed process left it
        # every reported save is there; each kill can add at most one commit it did not get to report
        assert ds.num_episodes >= max(reported, default=-1) + 1, (k, reported, ds.num_episodes)
        assert ds.num_episodes - len(reported) <= k + 1, (k, reported, ds.num_episodes)
        for e, n in reported.items():
            assert ds.episode(e).length == n
        for e in range(verified, ds.num_episodes):
            assert episode_problems(ds, e, stripes) == [], (k, e)
        verified = ds.num_episodes
        ds.close()
    # A last writer resumes, records one episode and closes cleanly: no leftovers, LeRobot's invariants.
    with DatasetWriter.resume(root) as w:
        e = w.num_episodes
        for i in range(3):
            w.add_frame(frame(e, i, H, W), task="final")
        w.save_episode()
    check_invariants(root)
    ds = open_dataset(root)
    assert ds.num_episodes == e + 1 and ds.num_episodes >= 4  # the children did get episodes saved
    for e in range(ds.num_episodes):
        assert episode_problems(ds, e, stripes, sequential=False) == [], e
    seen = collections.Counter(log.read_text().splitlines()) if log.exists() else {}
    print(
        f"\n{KILLS} kills in {time.monotonic() - start:.1f} s, {ds.num_episodes} episodes; recovery found: {dict(seen)}"
    )

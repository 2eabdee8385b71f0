"""Several simulated episodes at once: seeded episode starts, and worker processes that run them.

`jrobot.eval --num_envs N` runs each of N envs in its own worker process, a whole episode at a time
(the same episode loop as N = 1, `jrobot.runtime.loop.run_episode`), while the policy stays in the
caller's process: a worker's `policy.predict` is a request to the caller, which answers the requests
of all workers with one batched call. This module holds the parts that know nothing of policies:

- `start_episode(env, EpisodeStart(seed, instruction, swap_instruction))`: the one way an evaluation
  episode starts, in a worker or in the caller (seeded reset, the instruction or the swapped target);
- `Worker`: a fresh interpreter running a function of the caller's choosing ("module:function") with
  a connection to it, whose exceptions come back to the caller as they were raised.

Why not gymnasium's vector envs (`gymnasium.vector.AsyncVectorEnv`): evaluation needs episode i to
run from `reset(seed=seed + i, options=...)` whichever env runs it, so that the results cannot depend
on N. A vector env steps every sub-env on every call and resets finished ones itself (autoreset) with
no seed of ours: episodes of different lengths would leave envs stepping on dummy actions or, with
autoreset, starting episodes from an rng we do not set; its `reset(options=...)` gives every sub-env
the same options, where each episode has its own instruction or swapped target (chosen from the
layout the env has just built, `other_target`); and it hands every observation back to the caller at
every step, where a worker here runs the episode's steps itself (observation history, safety clamp,
chunk schedule, video) and crosses over to the caller only when its controller needs a new chunk (one
round trip per chunk, not per step). A worker that finishes an episode is simply given the next one.

This module imports no jax (the simulation layer never does).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing.connection
import os
import pickle
import socket
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np


class EpisodeStart(NamedTuple):
    """How one episode starts: `env.reset(seed=seed)`, then the instruction or the swapped target."""

    seed: int
    instruction: str | None = None  # the env is reset with it where its task takes an "instruction" option
    swap_instruction: bool = False  # reset again on the same layout with another object as the target


class Started(NamedTuple):
    obs: dict[str, np.ndarray]
    info: dict[str, Any]
    task: str | None  # the env's own instruction for the episode (`env_task`), None if it has none


def env_task(env: gym.Env, reset_info: Mapping[str, Any]) -> str | None:
    """The env's own instruction for the episode: `info["task"]` (jrobot's envs report it at every
    step), else an `instruction`/`task_description` attribute; None if the env has none."""
    task = reset_info.get("task")
    if isinstance(task, str) and task:
        return task
    for attr in ("task_description", "instruction"):
        value = getattr(env.unwrapped, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def env_reset_options(env: gym.Env) -> tuple[str, ...]:
    """The per-episode `reset(options=...)` names the env's task accepts (e.g. "target", "instruction")."""
    sim = getattr(env.unwrapped, "sim", None)
    return tuple(getattr(getattr(sim, "task", None), "reset_options", ()))


def other_target(env: gym.Env, reset_info: Mapping[str, Any], seed: int) -> str:
    """A target other than the one the episode was set up for, chosen by the seed (for the swap test)."""
    task = env.unwrapped.sim.task
    current = reset_info.get("target_color")
    others = [c for c in getattr(task, "colors", ()) if c != current]
    if not others or "target" not in env_reset_options(env):
        raise ValueError(
            f"{env.spec.id if env.spec else env}: swapping the instruction needs a task with several "
            "objects to name (e.g. jrobot/SO101PickColor-v0)"
        )
    return others[seed % len(others)]


def start_episode(env: gym.Env, start: EpisodeStart) -> Started:
    """Reset `env` for one evaluation episode (the one rule, in a worker or in the caller's process)."""
    options = None
    if start.instruction and "instruction" in env_reset_options(env):
        options = {"instruction": start.instruction}
    obs, info = env.reset(seed=start.seed, options=options)
    if start.swap_instruction:
        target = other_target(env, info, start.seed)
        obs, info = env.reset(seed=start.seed, options={"target": target})
    return Started(obs, info, env_task(env, info))


class WorkerError(RuntimeError):
    """A worker process died, or raised something that cannot travel back as it is."""


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling (a ValueError: the caller sees the same error), else
    a WorkerError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return WorkerError(f"{type(exc).__name__}: {exc}")


def host(conn: multiprocessing.connection.Connection) -> None:
    """A worker's life: the first message is ("module:function", kwargs); it runs
    `function(conn, **kwargs)` and ends with it. An exception is sent as ("error", exception,
    traceback); Ctrl-C (it reaches the whole process group) and the caller going away end it quietly."""
    try:
        try:
            target, kwargs = conn.recv()  # unpickling imports the target's module (its classes)
            module, _, name = target.partition(":")
            getattr(importlib.import_module(module), name)(conn, **kwargs)
        except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:
            conn.send(("error", _portable(e), traceback.format_exc()))
    except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        conn.close()


class Worker:
    """A fresh interpreter running `target(conn, **kwargs)` ("module:function"), talking over a socket.

    Not a fork: the caller has jax and its threads loaded, which a fork must not copy. Not
    multiprocessing's "spawn" either, which re-runs the caller's main script in every worker (a
    script without a `__main__` guard would start workers recursively, and a caller's imports would
    load jax into each): `python -m jrobot.sim.vector FD` imports only what the target needs. It ends
    when the target returns, when the caller's end of the socket goes away, or on Ctrl-C.
    """

    def __init__(self, target: str, kwargs: Mapping[str, Any], *, name: str = "worker") -> None:
        self.name = name
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # where `jrobot` is, installed or not
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        with theirs:
            fd = theirs.fileno()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jrobot.sim.vector", str(fd)], pass_fds=(fd,), env=env
            )
        self.conn = multiprocessing.connection.Connection(ours.detach())
        self.conn.send((target, dict(kwargs)))

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone
            self.conn.send(None)

    def send(self, msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise WorkerError(f"{self.name} exited (code {self.proc.poll()})") from e

    def recv(self) -> Any:
        """The worker's next message; its exception, raised here as it was raised there."""
        try:
            msg = self.conn.recv()
        except (EOFError, ConnectionResetError) as e:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise WorkerError(f"{self.name} exited (code {code})") from e
        if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "error":
            _, exc, tb = msg
            exc.add_note(f"in {self.name}:\n{tb}")
            raise exc
        return msg

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to stop (a `None` message), then wait for it; killed if it does not."""
        self.ask_to_stop()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)
        self.conn.close()


def close_all(workers: list[Worker], timeout_s: float = 10.0) -> None:
    """Close workers together: all are asked to stop before any is waited for."""
    for w in workers:
        w.ask_to_stop()
    for w in workers:
        w.close(timeout_s)


if __name__ == "__main__":  # a Worker: python -m jrobot.sim.vector FD
    from jrobot.sim import vector  # by its name, so what it sends unpickles in the caller

    vector.host(multiprocessing.connection.Connection(int(sys.argv[1])))

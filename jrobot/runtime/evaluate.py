"""Evaluating a policy in the simulator: seeded episodes through the real-time runtime's controller
(the same loop, observation conversion and safety path as on the arm), in one process or in `num_envs`
worker processes whose observations are batched into one policy call; the success rate with its
Wilson interval, per-episode outcomes, videos and the success-vs-time plot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from jrobot.bundle import BundleError, BundleInfo
from jrobot.features import ACTION_KEY, IMAGE_PREFIX
from jrobot.runtime.errors import PolicyTimeoutError, PolicyUnavailable
from jrobot.runtime.loop import LoopStats, PolicyController, run_episode
from jrobot.runtime.observations import NEEDS_TASK, TASK_KEY, TIMESTEP_KEY, DescribedByBundle
from jrobot.sim.vector import (  # noqa: F401  (env_reset_options, env_task, other_target: found here too)
    EpisodeStart,
    Worker,
    close_all,
    env_reset_options,
    env_task,
    other_target,
    start_episode,
)

log = logging.getLogger("jrobot.eval")

PLOT_NAME = "success_vs_time.png"
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def env_kwargs(info: BundleInfo, *, video_cameras: bool = False) -> dict[str, Any]:
    """The env's cameras, image size and environment state, as the policy was trained on them.

    A policy that reads no camera gets the simulator's default cameras anyway when `video_cameras`, so
    the evaluation videos show what happened.
    """
    from jrobot.sim.simulator import DEFAULT_CAMERAS, DEFAULT_IMAGE_SIZE

    cams = [k[len(IMAGE_PREFIX) :] for k in info.spec.image_keys]
    size = next(iter(info.image_shapes.values()))[:2] if info.image_shapes else DEFAULT_IMAGE_SIZE
    if not cams and video_cameras:
        cams = list(DEFAULT_CAMERAS)
    env_state = info.spec.env_state_key is not None
    return {"cameras": tuple(cams), "image_size": tuple(size), "environment_state": env_state}


def make_env(env_id: str, info: BundleInfo, *, video_cameras: bool = False, **kwargs: Any) -> gym.Env:
    """The gym env with the cameras and image size the policy was trained on (`env_kwargs`)."""
    import jrobot.sim  # noqa: F401  (registers the envs)

    return gym.make(env_id, **env_kwargs(info, video_cameras=video_cameras), **kwargs)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a success probability from `successes` of `n` trials (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes; with
    no trials it is the whole [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def noise_generator(episode_seed: int) -> np.random.Generator:
    """The generator of one episode's policy noise: seeded by the episode alone, whichever env runs it."""
    return np.random.default_rng([int(episode_seed), 0x6E6F697365])  # a stream apart from the env's


def policy_noise_shape(policy: Any) -> tuple[int, ...] | None:
    """(horizon, A) where the policy is stochastic and takes its initial noise in `predict(noise=...)`."""
    info = policy.info
    shape = info.spec.noise_shape
    if not info.stochastic or shape is None:
        return None
    if info.variants and not any(v.endswith("+noise") for v in info.variants):
        return None  # an exported function that draws its own noise only
    return tuple(int(d) for d in shape)


def _video_writer(path: Path, frame_shape: tuple[int, int], fps: int):
    from jrobot.data.video.encode import CameraEncoder, VideoOptions

    h, w = frame_shape
    return CameraEncoder(
        path,
        key="eval",
        height=h + (h % 2),
        width=w + (w % 2),
        fps=fps,
        options=VideoOptions(codec="libx264", crf=23, g=None, preset=None),
        durable=False,
    )


def _side_by_side(obs: Mapping[str, np.ndarray], keys: list[str]) -> np.ndarray:
    frames = [np.asarray(obs[k]) for k in keys]
    h = max(f.shape[0] for f in frames)
    frames = [np.pad(f, ((0, h - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    img = np.concatenate(frames, axis=1)
    return np.pad(img, ((0, img.shape[0] % 2), (0, img.shape[1] % 2), (0, 0)))


class _EnvRobot:
    """The gym env as the robot `run_episode` drives: one `env.step` per action sent.

    It keeps what the report needs (steps, success at any step and the first step it held,
    termination), feeds the video and, when asked, keeps the actions sent.
    """

    def __init__(
        self,
        env: gym.Env,
        obs: dict[str, Any],
        info: Mapping[str, Any],
        names: list[str],
        cams: list[str],
        video: Any,
        actions: list[np.ndarray] | None = None,
    ) -> None:
        self.env, self.obs, self.names, self.cams, self.video = env, obs, names, cams, video
        self.success = bool(info.get("is_success", False))
        self.success_step: int | None = 0 if self.success else None
        # None where the env does not report it; else whether another object was ever in the bin
        self.wrong_object = bool(info["wrong_object"]) if "wrong_object" in info else None
        self.actions = actions
        self.steps = 0
        self.done = False

    def get_observation(self) -> dict[str, Any]:
        return dict(self.obs)

    def send_action(self, action: Mapping[str, float]) -> dict[str, float]:
        vec = np.asarray([action[n] for n in self.names], np.float32)
        if self.actions is not None:
            self.actions.append(vec)
        self.obs, _, terminated, truncated, inf = self.env.step(vec)
        self.steps += 1
        if self.video is not None:
            self.video.put(_side_by_side(self.obs, self.cams))
        if not self.success and bool(inf.get("is_success", False)):
            self.success, self.success_step = True, self.steps
        if self.wrong_object is not None:
            self.wrong_object = self.wrong_object or bool(inf.get("wrong_object", False))
        self.done = bool(terminated or truncated)
        return dict(action)

    def episode_over(self) -> bool:
        return self.done


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every episode of an evaluation shares (it travels to the workers, so plain data only)."""

    env_id: str
    env_kwargs: dict[str, Any]
    seed: int  # of episode 0
    fps: int
    names: list[str]
    language: bool
    task: str | None
    swap_instruction: bool
    max_steps: int | None
    video_dir: str | None
    keep_actions: bool
    noise_shape: tuple[int, ...] | None
    controller: dict[str, Any]  # n_action_steps, temporal_ensemble_coeff (PolicyController's)

    def make_env(self) -> gym.Env:
        import jrobot.sim  # noqa: F401  (registers the envs)

        return gym.make(self.env_id, **self.env_kwargs)


def _run_one(env: gym.Env, policy: Any, controller: PolicyController, setup: _Setup, index: int) -> dict:
    """Episode `index` on `env` (reset from seed + index): the loop of N = 1 and of every worker.

    `policy` is the controller's policy (`_Local` or `_Requesting`): `seed` starts its episode."""
    ep_seed = setup.seed + index
    started = start_episode(env, EpisodeStart(ep_seed, setup.task, setup.swap_instruction))
    policy.seed(ep_seed)
    controller.reset()
    ep_task = None
    if setup.language:
        ep_task = setup.task or started.task
        if ep_task is None:
            raise ValueError(f"{NEEDS_TASK}: the env {setup.env_id} gives none, so pass --task")
        controller.task = ep_task
    cams = [k for k in env.observation_space.spaces if k.startswith(IMAGE_PREFIX)]
    writer = None
    if setup.video_dir is not None and cams:
        frame = _side_by_side(started.obs, cams)
        writer = _video_writer(Path(setup.video_dir) / f"episode_{index:03d}.mp4", frame.shape[:2], setup.fps)
        writer.put(frame)
    actions: list[np.ndarray] | None = [] if setup.keep_actions else None
    arm = _EnvRobot(env, started.obs, started.info, setup.names, cams, writer, actions)
    limit = setup.max_steps or env.spec.max_episode_steps or 300
    t_ep = time.perf_counter()
    run_episode(arm, controller, fps=setup.fps, max_steps=limit, realtime=False, should_stop=arm.episode_over)
    if writer is not None:
        writer.finish()
    result = {
        "episode": index,
        "seed": ep_seed,
        "success": arm.success,
        "steps": arm.steps,
        "success_step": arm.success_step,
        "wall_s": round(time.perf_counter() - t_ep, 3),
        "video": f"videos/episode_{index:03d}.mp4" if writer is not None else None,
        **({"task": ep_task} if setup.language else {}),
        **({"wrong_object": arm.wrong_object} if arm.wrong_object is not None else {}),
    }
    if actions is not None:
        result["actions"] = np.stack(actions) if actions else np.zeros((0, len(setup.names)), np.float32)
    return result


class _Batcher:
    """The one place the policy is called: one `policy.predict` on the stacked observations of the
    episodes that asked for a chunk, each with its own noise; the calls' times for the report.

    `timeout_s`: retry a policy that is unavailable for now (a served one, reconnecting) up to this
    long, as the controller does for one robot; None lets `PolicyUnavailable` through (to that
    controller, N = 1). `exact`: one call per row instead (batch size 1, whatever N).
    """

    def __init__(self, policy: Any, *, timeout_s: float | None = None, exact: bool = False) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.exact = exact
        self.times_s: list[float] = []
        self.rows: list[int] = []

    def predict(self, inputs: list[dict[str, Any]], noise: list[np.ndarray] | None) -> list[np.ndarray]:
        if self.exact and len(inputs) > 1:
            rows = [[z] for z in noise] if noise is not None else [None] * len(inputs)
            return [self.predict([x], z)[0] for x, z in zip(inputs, rows, strict=True)]
        if len(inputs) == 1:  # what the controller sends for one robot, as it is
            obs = inputs[0]
        else:
            obs = {
                k: np.concatenate([x[k] for x in inputs])
                for k in inputs[0]
                if k not in (TASK_KEY, TIMESTEP_KEY)
            }
            if TASK_KEY in inputs[0]:
                obs[TASK_KEY] = [x[TASK_KEY] for x in inputs]
        kwargs = {"noise": np.stack(noise)} if noise is not None else {}
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            t0 = time.perf_counter()
            try:
                out = np.asarray(self.policy.predict(obs, **kwargs))
                break
            except PolicyUnavailable as e:
                if deadline is None:
                    raise
                if time.monotonic() >= deadline:
                    raise PolicyTimeoutError(f"the policy did not answer ({e}); stopping") from e
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        self.times_s.append(time.perf_counter() - t0)
        self.rows.append(len(inputs))
        if out.ndim != 3 or out.shape[0] != len(inputs):
            raise RuntimeError(
                f"the policy answered actions of shape {out.shape} for {len(inputs)} observations"
            )
        return [out[i : i + 1] for i in range(len(inputs))]


class _Local:
    """The policy as the controller of an in-process episode sees it (N = 1): the policy itself, with
    each episode's noise drawn here and the call made (and timed) by the batcher."""

    def __init__(self, policy: Any, batcher: _Batcher, noise_shape: tuple[int, ...] | None) -> None:
        self._policy, self._batcher, self._noise_shape = policy, batcher, noise_shape
        self._noise: np.random.Generator | None = None

    def __getattr__(self, name: str) -> Any:  # action_names, observation_builder, ...
        return getattr(self._policy, name)

    def seed(self, seed: int) -> None:
        self._policy.seed(seed)  # a served policy also starts a new episode (its timesteps from 0)
        self._noise = noise_generator(seed) if self._noise_shape is not None else None

    def predict(self, observation: Mapping[str, Any], **_: Any) -> np.ndarray:
        noise = None
        if self._noise is not None:
            noise = [self._noise.standard_normal(self._noise_shape, dtype=np.float32)]
        return self._batcher.predict([dict(observation)], noise)[0]


class _Closing(Exception):
    """The caller closes the worker while it waits for a chunk."""


class _Requesting(DescribedByBundle):
    """The policy as a worker's controller sees it: the bundle's description, and `predict` a request
    to the process that holds the policy (with this episode's noise), answered with its chunk."""

    def __init__(self, conn: Any, info: BundleInfo, noise_shape: tuple[int, ...] | None) -> None:
        self.conn, self.info, self._noise_shape = conn, info, noise_shape
        self._noise: np.random.Generator | None = None

    def seed(self, seed: int) -> None:
        self._noise = noise_generator(seed) if self._noise_shape is not None else None

    def predict(self, observation: Mapping[str, Any], **_: Any) -> np.ndarray:
        obs = {k: v for k, v in observation.items() if k != TIMESTEP_KEY}
        noise = None
        if self._noise is not None:
            noise = self._noise.standard_normal(self._noise_shape, dtype=np.float32)
        self.conn.send(("predict", obs, noise))
        chunk = self.conn.recv()
        if chunk is None:
            raise _Closing
        return chunk


def _episode_worker(conn: Any, setup: _Setup, info: dict[str, Any]) -> None:
    """A worker of `evaluate(num_envs > 1)` (`jrobot.sim.vector.Worker`): for each episode index it is
    sent, the episode (sending ("predict", observation, noise) and waiting for the chunk whenever its
    controller needs one), then ("done", result); `None` ends it."""
    policy = _Requesting(conn, BundleInfo.from_json(info, path=Path("<jrobot.eval>")), setup.noise_shape)
    controller = PolicyController(policy, mode="sync", **setup.controller)
    env = setup.make_env()
    try:
        while (index := conn.recv()) is not None:
            conn.send(("done", _run_one(env, policy, controller, setup, index)))
    except _Closing:
        pass
    finally:
        env.close()


def plot_success_vs_time(
    results: Sequence[Mapping[str, Any]], path: str | Path, *, fps: int, max_steps: int, title: str = ""
) -> Path:
    """The fraction of episodes solved within t seconds of simulated time (a success's first step / fps),
    with Wilson's 95% interval at each t as a band; its right end is the success rate."""
    from matplotlib.figure import Figure

    n = len(results)
    steps = np.arange(max_steps + 1)
    first = np.sort(
        [r["success_step"] for r in results if r["success"] and r.get("success_step") is not None]
    )
    solved = np.searchsorted(first, steps, side="right")
    band = np.array([wilson_interval(int(k), n) for k in solved]) if n else np.zeros((len(steps), 2))
    t = steps / fps
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(t, band[:, 0], band[:, 1], step="post", alpha=0.25, label="95% interval (Wilson)")
    ax.step(t, solved / max(n, 1), where="post", label=f"solved by then (of {n} episodes)")
    ax.set_xlim(0, t[-1] if len(t) > 1 else 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("simulated time since reset (s)")
    ax.set_ylabel("fraction of episodes solved")
    top = ax.secondary_xaxis("top", functions=(lambda s: s * fps, lambda k: k / fps))
    top.set_xlabel("control steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path)
    return Path(path)


def evaluate(
    policy: Any,
    *,
    env_id: str = "jrobot/SO101PickPlace-v0",
    episodes: int = 10,
    seed: int = 0,
    out: str | Path | None = None,
    videos: bool = True,
    max_steps: int | None = None,
    n_action_steps: int | None = None,
    temporal_ensemble_coeff: float | None = None,
    task: str | None = None,
    swap_instruction: bool = False,
    num_envs: int = 1,
    exact: bool = False,
    on_action: Callable[[int, int, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Roll `policy` (a BundlePolicy or anything with .info/.spec/.predict) out for `episodes` episodes.

    `task`: the instruction of a language-conditioned policy (default: the env's, per episode). An env
    whose task takes an `instruction` reset option (jrobot/SO101PickColor-v0) is reset with it, so
    success is judged against the object the instruction names. `swap_instruction`: every episode is
    reset a second time on the same layout with another object as the target (and the instruction
    naming it): does the policy follow the instruction, or the habits of the scene? Episodes report
    `wrong_object` where the env does (another object ended in the bin).

    `num_envs`: episodes run at once, each env in a worker process, with one batched policy call for
    the episodes that need a chunk (see the module docstring); 1 runs the env in this process.
    `exact`: one policy call per env instead (batch size 1, as N = 1): bit for bit N = 1's actions.
    `on_action(episode, step, action)` sees every action sent to an env (joint targets, float32); with
    num_envs > 1 once the episode has ended, in step order.
    """
    if swap_instruction and task is not None:
        raise ValueError(
            "swap_instruction and task are exclusive: the swap chooses each episode's instruction"
        )
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    info: BundleInfo = policy.info
    action_names = list(info.features[ACTION_KEY].flat_names or ())
    if action_names and all(n.startswith("ee.") for n in action_names):
        raise BundleError(
            f"the policy acts in end-effector space ({action_names}); the simulator's envs "
            "take joints: run its episodes with `jrobot.run --policy ... --robot.type=sim --robot.space=ee "
            "--episodes N`, which reports the success rate"
        )
    language = bool(info.spec.language_keys)
    if task is not None and not language:
        log.warning("--task ignored: this policy takes no task instruction")
    out_dir = Path(out) if out is not None else None
    video_dir = out_dir / "videos" if out_dir is not None and videos else None
    if out_dir is not None:
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    setup = _Setup(
        env_id=env_id,
        env_kwargs=env_kwargs(info, video_cameras=videos and out is not None),
        seed=seed,
        fps=info.fps,
        names=list(info.features[ACTION_KEY].flat_names),
        language=language,
        task=task,
        swap_instruction=swap_instruction,
        max_steps=max_steps,
        video_dir=str(video_dir) if video_dir is not None else None,
        keep_actions=on_action is not None,
        noise_shape=policy_noise_shape(policy),
        controller={"n_action_steps": n_action_steps, "temporal_ensemble_coeff": temporal_ensemble_coeff},
    )
    n_envs = max(1, min(num_envs, episodes))
    t_start = time.perf_counter()
    if n_envs == 1:
        batcher = _Batcher(policy)
        results = _evaluate_here(policy, setup, episodes, batcher, on_action)
    else:
        # a served policy: retry while it is unavailable, up to its timeout (the controller's rule)
        batcher = _Batcher(policy, timeout_s=getattr(policy, "timeout_s", None), exact=exact)
        results = _evaluate_in_workers(policy, setup, episodes, n_envs, batcher, on_action)
    wall_s = time.perf_counter() - t_start
    k = sum(bool(r["success"]) for r in results)
    lo, hi = wilson_interval(k, len(results))
    latency = LoopStats(inference_s=list(batcher.times_s), steps=sum(r["steps"] for r in results)).report()
    latency["inference_rows"] = int(sum(batcher.rows))
    latency["batch_size_mean"] = round(float(np.mean(batcher.rows)), 3) if batcher.rows else None
    report = {
        "env": env_id,
        "episodes": results,
        "num_episodes": len(results),
        "success_rate": k / len(results) if results else 0.0,
        "success_ci95": [round(lo, 4), round(hi, 4)],
        "successes": k,
        **(
            {"wrong_object_rate": float(np.mean([r["wrong_object"] for r in results]))}
            if results and all("wrong_object" in r for r in results)
            else {}
        ),
        **({"swap_instruction": True} if swap_instruction else {}),
        "num_envs": n_envs,
        **({"exact": True} if exact and n_envs > 1 else {}),
        "wall_s": round(wall_s, 2),
        "episodes_per_minute": round(60.0 * len(results) / wall_s, 2) if wall_s > 0 else None,
        "latency": latency,
    }
    if out_dir is not None:
        if results:
            import jrobot.sim  # noqa: F401  (registers the envs: their time limits)

            limit = max_steps or gym.spec(env_id).max_episode_steps or max(r["steps"] for r in results)
            rate = f"{report['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})"
            try:
                plot_success_vs_time(
                    results, out_dir / PLOT_NAME, fps=info.fps, max_steps=limit,
                    title=f"{env_id}: {k}/{len(results)} solved, {rate}",
                )  # fmt: skip
                report["plot"] = PLOT_NAME
            except ImportError as e:  # matplotlib is a dependency; a broken install costs the plot only
                log.warning("no %s: %s", PLOT_NAME, e)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _finished(result: dict[str, Any], on_action: Callable[[int, int, np.ndarray], None] | None) -> dict:
    actions = result.pop("actions", None)
    if on_action is not None and actions is not None:
        for step, action in enumerate(actions):
            on_action(result["episode"], step, action)
    log.info(
        "episode %d (seed %d): %s in %d steps",
        result["episode"], result["seed"], "success" if result["success"] else "fail", result["steps"],
    )  # fmt: skip
    return result


def _evaluate_here(
    policy: Any, setup: _Setup, episodes: int, batcher: _Batcher, on_action: Callable | None
) -> list[dict[str, Any]]:
    """N = 1: the env in this process, one episode after the other."""
    local = _Local(policy, batcher, setup.noise_shape)
    controller = PolicyController(
        local,
        mode="sync",
        timeout_s=getattr(policy, "timeout_s", None),  # a served policy: give up after its timeout
        **setup.controller,
    )
    env = setup.make_env()
    try:
        return [_finished(_run_one(env, local, controller, setup, i), on_action) for i in range(episodes)]
    finally:
        controller.close()
        env.close()


def _evaluate_in_workers(
    policy: Any, setup: _Setup, episodes: int, n_envs: int, batcher: _Batcher, on_action: Callable | None
) -> list[dict[str, Any]]:
    """N > 1: each env in a worker; the chunks the busy workers ask for, one batched call at a time."""
    if setup.env_kwargs.get("cameras"):  # decide the GL platform once, for every worker (jrobot.sim.gl)
        from jrobot.sim.gl import gl_backend

        gl_backend()
    kwargs = {"setup": setup, "info": policy.info.to_json()}
    workers: list[Worker] = []
    try:
        for i in range(n_envs):
            workers.append(Worker("jrobot.runtime.evaluate:_episode_worker", kwargs, name=f"env worker {i}"))
        todo = deque(range(episodes))
        busy: dict[int, int] = {}  # worker -> the episode it runs
        for w in range(n_envs):
            busy[w] = todo.popleft()
            workers[w].send(busy[w])
        done: dict[int, dict[str, Any]] = {}
        while busy:
            # one round: every busy worker asks for a chunk (a worker that finishes its episode is given
            # the next one, and asks too), then one call answers them all, rows in worker order
            asks: dict[int, tuple[dict[str, Any], np.ndarray | None]] = {}
            while waiting := [w for w in sorted(busy) if w not in asks]:
                for w in waiting:
                    kind, *payload = workers[w].recv()
                    if kind == "predict":
                        asks[w] = (payload[0], payload[1])
                        continue
                    result = _finished(payload[0], on_action)
                    done[result["episode"]] = result
                    del busy[w]
                    if todo:
                        busy[w] = todo.popleft()
                        workers[w].send(busy[w])
            if asks:
                order = sorted(asks)
                noise = [asks[w][1] for w in order] if setup.noise_shape is not None else None
                chunks = batcher.predict([asks[w][0] for w in order], noise)
                for w, chunk in zip(order, chunks, strict=True):
                    workers[w].send(chunk)
        return [done[i] for i in sorted(done)]
    finally:
        close_all(workers)

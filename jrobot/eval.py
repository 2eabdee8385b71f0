"""`python -m jrobot.eval`: success rate of a policy bundle in the MuJoCo simulation, with videos.

    python -m jrobot.eval --policy=bundles/act --env=jrobot/SO101PickPlace-v0 --episodes=50 --out=eval/act
    python -m jrobot.eval --policy=ws://gpu-box:8000 --episodes=50 --out=eval/served   # a jrobot.serve server

Flags follow `jrobot.run`'s grammar (`--name=value` or `--name value`, dashes or underscores):
`--seed` (of the first episode, default 100000), `--max_steps`, `--videos=false`,
`--n_action_steps`, `--temporal_ensemble_coeff`, `--task` (the instruction of a language-conditioned
policy; by default the env's own, `info["task"]` at reset, which is what the simulator records with).

Each episode is seeded (`--seed` + episode number), so two evaluations of the same bundle see the same
cube placements. The policy runs through the same controller as on the real robot (`jrobot.runtime`),
in synchronous mode: the simulator's clock advances one control period per action, so results do not
depend on how fast this machine is. `DIR/report.json` holds `success_rate`, per-episode results and
timing; `DIR/videos/episode_NNN.mp4` shows the policy's cameras side by side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from jrobot.bundle import BundleInfo
from jrobot.cli import Binder, CliError, run_tool
from jrobot.features import ACTION_KEY, IMAGE_PREFIX
from jrobot.runtime.loop import PolicyController, run_episode
from jrobot.runtime.observations import NEEDS_TASK
from jrobot.runtime.sources import RemoteOptions, open_policy

USAGE = __doc__ or ""
log = logging.getLogger("jrobot.eval")


def make_env(env_id: str, info: BundleInfo, *, video_cameras: bool = False, **kwargs: Any) -> gym.Env:
    """The gym env with the cameras and image size the policy was trained on.

    A policy that reads no camera gets the simulator's default cameras anyway when `video_cameras`, so
    the evaluation videos show what happened.
    """
    import jrobot.sim  # noqa: F401  (registers the envs)
    from jrobot.sim.simulator import DEFAULT_CAMERAS, DEFAULT_IMAGE_SIZE

    cams = [k[len(IMAGE_PREFIX) :] for k in info.spec.image_keys]
    size = next(iter(info.image_shapes.values()))[:2] if info.image_shapes else DEFAULT_IMAGE_SIZE
    if not cams and video_cameras:
        cams = list(DEFAULT_CAMERAS)
    env_state = info.spec.env_state_key is not None
    return gym.make(
        env_id, cameras=tuple(cams), image_size=tuple(size), environment_state=env_state, **kwargs
    )


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

    It keeps what the report needs (steps, success at any step, termination) and feeds the video.
    """

    def __init__(
        self,
        env: gym.Env,
        obs: dict[str, Any],
        info: Mapping[str, Any],
        names: list[str],
        cams: list[str],
        video: Any,
    ) -> None:
        self.env, self.obs, self.names, self.cams, self.video = env, obs, names, cams, video
        self.success = bool(info.get("is_success", False))
        # None where the env does not report it; else whether another object was ever in the bin
        self.wrong_object = bool(info["wrong_object"]) if "wrong_object" in info else None
        self.steps = 0
        self.done = False

    def get_observation(self) -> dict[str, Any]:
        return dict(self.obs)

    def send_action(self, action: Mapping[str, float]) -> dict[str, float]:
        vec = np.asarray([action[n] for n in self.names], np.float32)
        self.obs, _, terminated, truncated, inf = self.env.step(vec)
        self.steps += 1
        if self.video is not None:
            self.video.put(_side_by_side(self.obs, self.cams))
        self.success = self.success or bool(inf.get("is_success", False))
        if self.wrong_object is not None:
            self.wrong_object = self.wrong_object or bool(inf.get("wrong_object", False))
        self.done = bool(terminated or truncated)
        return dict(action)

    def episode_over(self) -> bool:
        return self.done


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
) -> dict[str, Any]:
    """Roll `policy` (a BundlePolicy or anything with .info/.spec/.predict) out for `episodes` episodes.

    `task`: the instruction of a language-conditioned policy (default: the env's, per episode). An env
    whose task takes an `instruction` reset option (jrobot/SO101PickColor-v0) is reset with it, so
    success is judged against the object the instruction names. `swap_instruction`: every episode is
    reset a second time on the same layout with another object as the target (and the instruction
    naming it): does the policy follow the instruction, or the habits of the scene? Episodes report
    `wrong_object` where the env does (another object ended in the bin).
    """
    if swap_instruction and task is not None:
        raise ValueError(
            "swap_instruction and task are exclusive: the swap chooses each episode's instruction"
        )
    info: BundleInfo = policy.info
    language = bool(info.spec.language_keys)
    if task is not None and not language:
        log.warning("--task ignored: this policy takes no task instruction")
    env = make_env(env_id, info, video_cameras=videos and out is not None)
    controller = PolicyController(
        policy,
        mode="sync",
        n_action_steps=n_action_steps,
        temporal_ensemble_coeff=temporal_ensemble_coeff,
        timeout_s=getattr(policy, "timeout_s", None),  # a served policy: give up after its timeout
    )
    names = info.features[ACTION_KEY].flat_names
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    cams = [k for k in env.observation_space.spaces if k.startswith(IMAGE_PREFIX)]
    results = []
    t_start = time.perf_counter()
    try:
        for ep in range(episodes):
            ep_seed = seed + ep
            options = {"instruction": task} if task and "instruction" in env_reset_options(env) else None
            obs, inf = env.reset(seed=ep_seed, options=options)
            if swap_instruction:
                obs, inf = env.reset(seed=ep_seed, options={"target": other_target(env, inf, ep_seed)})
            policy.seed(ep_seed)
            controller.reset()
            ep_task = None
            if language:
                ep_task = task or env_task(env, inf)
                if ep_task is None:
                    raise ValueError(f"{NEEDS_TASK}: the env {env_id} gives none, so pass --task")
                controller.task = ep_task
            writer = None
            if out_dir is not None and videos and cams:
                frame = _side_by_side(obs, cams)
                writer = _video_writer(
                    out_dir / "videos" / f"episode_{ep:03d}.mp4", frame.shape[:2], info.fps
                )
                writer.put(frame)
            arm = _EnvRobot(env, obs, inf, names, cams, writer)
            limit = max_steps or env.spec.max_episode_steps or 300
            t_ep = time.perf_counter()
            run_episode(
                arm, controller, fps=info.fps, max_steps=limit, realtime=False, should_stop=arm.episode_over
            )
            success, steps = arm.success, arm.steps
            if writer is not None:
                writer.finish()
            results.append(
                {
                    "episode": ep,
                    "seed": ep_seed,
                    "success": success,
                    "steps": steps,
                    "wall_s": round(time.perf_counter() - t_ep, 3),
                    "video": f"videos/episode_{ep:03d}.mp4" if writer is not None else None,
                    **({"task": ep_task} if language else {}),
                    **({"wrong_object": arm.wrong_object} if arm.wrong_object is not None else {}),
                }
            )
            log.info(
                "episode %d (seed %d): %s in %d steps", ep, ep_seed, "success" if success else "fail", steps
            )
    finally:
        controller.close()
        env.close()
    report = {
        "env": env_id,
        "episodes": results,
        "num_episodes": len(results),
        "success_rate": float(np.mean([r["success"] for r in results])) if results else 0.0,
        **(
            {"wrong_object_rate": float(np.mean([r["wrong_object"] for r in results]))}
            if results and all("wrong_object" in r for r in results)
            else {}
        ),
        **({"swap_instruction": True} if swap_instruction else {}),
        "wall_s": round(time.perf_counter() - t_start, 2),
        "latency": controller.stats.report(),
    }
    if out_dir is not None:
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


@dataclasses.dataclass
class EvalOptions:
    """`python -m jrobot.eval` flags, in the grammar of `jrobot.run` (`--name=value`, `--name value`)."""

    policy: str  # policy bundle (python -m jrobot.export), or a jrobot.serve server: ws://HOST:PORT
    out: Path  # output directory (report.json, videos/)
    env: str = "jrobot/SO101PickPlace-v0"
    episodes: int = 50
    seed: int = 100_000  # seed of the first episode (then +1 each)
    max_steps: int | None = None
    videos: bool = True
    no_videos: bool = False  # the older spelling of --videos=false
    n_action_steps: int | None = None  # override the bundle's n_action_steps
    temporal_ensemble_coeff: float | None = None  # ensemble overlapping chunks (e.g. 0.01)
    task: str | None = None  # instruction for a language-conditioned policy (default: the env's own)
    swap_instruction: bool = False  # instruct another object than the scene's target (multi-object envs)
    token_file: Path | None = None  # the server's shared secret (--policy ws://...)
    remote: RemoteOptions | None = None  # --remote.timeout_s, --remote.reconnect

    def __post_init__(self) -> None:
        self.policy = str(self.policy)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.no_videos:
            self.videos = False


def main(argv: Sequence[str]) -> int:
    binder = Binder.from_argv(argv)
    args = binder.build(EvalOptions)
    binder.finish()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.policy.startswith("openpi://"):
        raise CliError("jrobot.eval needs the policy's bundle description: a bundle folder or ws://HOST:PORT")
    policy = open_policy(args.policy, remote=args.remote, token_file=args.token_file)
    policy.warmup()
    try:
        report = evaluate(
            policy,
            env_id=args.env,
            episodes=args.episodes,
            seed=args.seed,
            out=args.out,
            videos=args.videos,
            max_steps=args.max_steps,
            n_action_steps=args.n_action_steps,
            temporal_ensemble_coeff=args.temporal_ensemble_coeff,
            task=args.task,
            swap_instruction=args.swap_instruction,
        )
    finally:
        if hasattr(policy, "close"):
            policy.close()
    print(
        f"success rate {report['success_rate']:.1%} over {report['num_episodes']} episodes "
        f"({report['wall_s']:.0f} s); report: {args.out / 'report.json'}, videos: {args.out / 'videos'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

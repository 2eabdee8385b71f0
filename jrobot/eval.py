"""`python -m jrobot.eval`: success rate of a policy bundle in the MuJoCo simulation, with videos.

    python -m jrobot.eval --policy bundles/act --env jrobot/SO101PickPlace-v0 --episodes 50 --out eval/act

Each episode is seeded (`--seed` + episode number), so two evaluations of the same bundle see the same
cube placements. The policy runs through the same controller as on the real robot (`jrobot.runtime`),
in synchronous mode: the simulator's clock advances one control period per action, so results do not
depend on how fast this machine is. `DIR/report.json` holds `success_rate`, per-episode results and
timing; `DIR/videos/episode_NNN.mp4` shows the policy's cameras side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from jrobot.bundle import BundleInfo
from jrobot.features import ACTION_KEY, IMAGE_PREFIX, STATE_KEY
from jrobot.runtime.loop import PolicyController
from jrobot.runtime.policy import BundlePolicy

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


def _video_writer(path: Path, frame_shape: tuple[int, int], fps: int):
    from jrobot.data.video_encode import CameraEncoder, VideoOptions

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
) -> dict[str, Any]:
    """Roll `policy` (a BundlePolicy or anything with .info/.spec/.predict) out for `episodes` episodes."""
    info: BundleInfo = policy.info
    env = make_env(env_id, info, video_cameras=videos and out is not None)
    controller = PolicyController(
        policy, mode="sync", n_action_steps=n_action_steps, temporal_ensemble_coeff=temporal_ensemble_coeff
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
            obs, inf = env.reset(seed=ep_seed)
            policy.seed(ep_seed) if hasattr(policy, "seed") else None
            controller.reset()
            writer = None
            if out_dir is not None and videos and cams:
                frame = _side_by_side(obs, cams)
                writer = _video_writer(
                    out_dir / "videos" / f"episode_{ep:03d}.mp4", frame.shape[:2], info.fps
                )
                writer.put(frame)
            success = bool(inf.get("is_success", False))
            steps = 0
            limit = max_steps or env.spec.max_episode_steps or 300
            t_ep = time.perf_counter()
            while steps < limit:
                robot_obs = dict(obs)
                robot_obs[STATE_KEY] = obs[STATE_KEY]
                action = controller.act(robot_obs, 1.0 / info.fps)
                vec = np.asarray([action[n] for n in names], np.float32)
                obs, _, terminated, truncated, inf = env.step(vec)
                steps += 1
                if writer is not None:
                    writer.put(_side_by_side(obs, cams))
                success = success or bool(inf.get("is_success", False))
                if terminated or truncated:
                    break
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
        "wall_s": round(time.perf_counter() - t_start, 2),
        "latency": controller.stats.report(),
    }
    if out_dir is not None:
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


class ModelPolicy:
    """An in-memory NNX policy behind the BundlePolicy interface (periodic evaluation during training)."""

    def __init__(self, model: Any, features: Mapping[str, Any], fps: int):
        import jax

        from jrobot.policies.base import load_policy_module

        self.spec = model.spec
        module = load_policy_module(self.spec.type)
        self.info = BundleInfo(
            spec=self.spec,
            stats=model.normalizer.stats_dict(),
            features=dict(features),
            fps=int(fps),
            robot_type=None,
            image_shapes={
                k: (f.shape[1], f.shape[2], f.shape[0])
                for k, f in self.spec.input_features.items()
                if k in self.spec.image_keys
            },
            variants=[],
            stochastic=False,
            source={},
            training_config=None,
        )
        from flax import nnx

        graphdef, state = nnx.split(model)
        self._state = state
        self._fn = jax.jit(lambda st, obs, key: module.sample_actions(nnx.merge(graphdef, st), obs, key))
        self._key = jax.random.PRNGKey(0)

    def seed(self, seed: int) -> None:
        import jax

        self._key = jax.random.PRNGKey(seed)

    def predict(self, observation: Mapping[str, Any], **_: Any) -> np.ndarray:
        import jax

        self._key, key = jax.random.split(self._key)
        return np.asarray(self._fn(self._state, dict(observation), key))


def evaluate_model(model: Any, *, features: Mapping[str, Any], fps: int, **kwargs: Any) -> dict[str, Any]:
    return evaluate(ModelPolicy(model, features, fps), videos=False, **kwargs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jrobot.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True, help="policy bundle (python -m jrobot.export)")
    p.add_argument("--env", default="jrobot/SO101PickPlace-v0")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=100_000, help="seed of the first episode (then +1 each)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--no-videos", action="store_true")
    p.add_argument("--n-action-steps", type=int, default=None, help="override the bundle's n_action_steps")
    p.add_argument(
        "--temporal-ensemble-coeff", type=float, default=None, help="ensemble overlapping chunks (e.g. 0.01)"
    )
    p.add_argument("--out", required=True, help="output directory (report.json, videos/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    policy = BundlePolicy(args.policy)
    policy.warmup()
    report = evaluate(
        policy,
        env_id=args.env,
        episodes=args.episodes,
        seed=args.seed,
        out=args.out,
        videos=not args.no_videos,
        max_steps=args.max_steps,
        n_action_steps=args.n_action_steps,
        temporal_ensemble_coeff=args.temporal_ensemble_coeff,
    )
    print(
        f"success rate {report['success_rate']:.1%} over {report['num_episodes']} episodes "
        f"({report['wall_s']:.0f} s); report: {Path(args.out) / 'report.json'}, videos: {Path(args.out) / 'videos'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

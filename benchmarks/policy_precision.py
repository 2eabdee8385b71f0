"""How far a policy's actions are from the scripted expert's on the expert's own states, phase by phase.

    python benchmarks/policy_precision.py --bundles outputs/demo/bundle,runs/vla_bundle \
        [--env jrobot/SO101PickPlace-v0] [--episodes 4] [--samples 8] [--stride 3]

Success over 50 episodes says whether a policy works, not why it fails. Here the scripted expert (the
demonstrator the policies imitate) drives the simulator through each seeded episode, and every
`--stride` steps every bundle predicts a chunk from that observation. Nothing the policy does feeds
back, so the states are the training distribution and the errors do not compound: what is measured
is the policy's own precision.

Measures, per expert phase (swing, descend, close, ...) and over all states, in dataset units (degrees
for the arm joints, percent for the gripper):
- `a0`: |chunk[0] - the expert's action at that step|, the move the policy would make now, averaged
  over the arm's 5 joints; `grip0` the same for the gripper;
- `a10`: |chunk[10] - the expert's action 10 steps later|, arm joints;
- for a policy that samples (diffusion, flow matching), `--samples K` chunks per state, each from its
  own noise: the errors are of the samples' mean and `spread` is the samples' standard deviation at
  step 10. A mean far off with a small spread is a biased policy; a mean on target with a wide spread,
  a noisy one whose samples average out;
- `a10, other images`: `a10` again with the cameras' images taken from the next episode (another cube
  layout) at the same step, the joint state unchanged. A policy that finds the cube in its cameras
  gets much worse; one that infers the target from the arm's joints (along the expert's path they
  give it away) hardly changes, and in closed loop, once off the path, misses the cube. The printed
  factor is this growth over the expert's first move (the reach towards the cube).

Baseline: the first bundle (e.g. the ACT demo's, which reaches 96% on the single-cube task), on the
same states; each other bundle's ratio is its `a0` error over the baseline's (lower is better, 1.0 is
as precise as the baseline). About 1 min for 2 bundles and 4 episodes on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from common import print_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AHEAD = 10  # the chunk step compared with the expert's action that many steps later


def _batch(obs: dict[str, Any], k: int) -> dict[str, Any]:
    """The prepared observation repeated k times along the batch (tasks as a list of k)."""
    out: dict[str, Any] = {}
    for key, v in obs.items():
        if isinstance(v, np.ndarray):
            out[key] = np.repeat(v, k, axis=0)
        elif isinstance(v, list):
            out[key] = v * k
        else:
            out[key] = [v] * k
    return out


def images_of(obs: dict[str, Any]) -> dict[str, Any]:
    from jrobot.features import IMAGE_PREFIX

    return {k: v for k, v in obs.items() if k.startswith(IMAGE_PREFIX)}


def measure(
    bundles: list[str], env_id: str, episodes: int, samples: int, stride: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """{bundle: {phase or "all": {a0, grip0, a10, spread, a10_other_images, n}}} over the expert's rollouts."""
    import gymnasium as gym

    import jrobot.sim  # noqa: F401  (registers the envs)
    from jrobot.runtime.evaluate import env_kwargs, noise_generator
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.sim.expert import make_expert

    policies = [BundlePolicy(b) for b in bundles]
    shapes = {tuple(p.info.image_shapes.values())[:1] for p in policies}
    if len(shapes) > 1:
        raise SystemExit(
            f"--bundles read cameras of different sizes {sorted(shapes)}; compare like with like"
        )
    env = gym.make(env_id, **env_kwargs(policies[0].info))
    rows: dict[str, dict[str, list[np.ndarray]]] = {b: collections.defaultdict(list) for b in bundles}
    try:
        rollouts = []
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            expert = make_expert(env.unwrapped.sim)
            expert.reset()
            states, phases, actions = [], [], []
            while not expert.done:
                phases.append(expert.phase())
                action = expert.next_action().astype(np.float32)
                states.append(obs)
                actions.append(action)
                obs, *_ = env.step(action)
            rollouts.append((states, phases, np.stack(actions), info.get("task")))
        for ep, (states, phases, actions_arr, task) in enumerate(rollouts):
            others = rollouts[(ep + 1) % episodes][0]  # another layout's images at the same step
            for b, policy in zip(bundles, policies, strict=True):
                language = bool(policy.spec.language_keys)
                stochastic = policy.spec.noise_shape is not None
                k = samples if stochastic else 1
                noise_rng = noise_generator(seed + ep)
                for t in range(0, len(actions_arr) - AHEAD, stride):
                    swapped = {**states[t], **images_of(others[min(t, len(others) - 1)])}
                    kwargs = {}
                    if stochastic:  # the same noise for both, so only the images differ
                        shape = (k, *policy.spec.noise_shape)
                        kwargs["noise"] = noise_rng.standard_normal(shape, dtype=np.float32)
                    own, other = (
                        np.asarray(
                            policy.predict(
                                _batch(policy.observation_builder(task if language else None).push(o), k),
                                **kwargs,
                            )
                        )
                        for o in (states[t], swapped)
                    )
                    mean = own.mean(axis=0)
                    err0 = np.abs(mean[0] - actions_arr[t])
                    err10 = np.abs(mean[AHEAD] - actions_arr[t + AHEAD])
                    err10_swapped = np.abs(other.mean(axis=0)[AHEAD] - actions_arr[t + AHEAD])
                    spread = own[:, AHEAD, :5].std(axis=0).mean() if k > 1 else 0.0
                    rows[b][phases[t]].append(
                        np.array(
                            [err0[:5].mean(), err0[5], err10[:5].mean(), spread, err10_swapped[:5].mean()]
                        )
                    )
    finally:
        env.close()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for b in bundles:
        table = {ph: np.stack(v) for ph, v in rows[b].items()}
        table["all"] = np.concatenate(list(table.values()))
        out[b] = {
            ph: {
                "a0": float(v[:, 0].mean()),
                "grip0": float(v[:, 1].mean()),
                "a10": float(v[:, 2].mean()),
                "spread": float(v[:, 3].mean()),
                "a10_other_images": float(v[:, 4].mean()),
                "n": len(v),
            }
            for ph, v in table.items()
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bundles", required=True, help="comma-separated bundle folders; the first is the baseline"
    )
    ap.add_argument("--env", default="jrobot/SO101PickPlace-v0", help="the task the bundles were trained on")
    ap.add_argument("--episodes", type=int, default=4, help="expert rollouts (seeded from --seed)")
    ap.add_argument("--samples", type=int, default=8, help="chunks per state for a policy that samples")
    ap.add_argument("--stride", type=int, default=3, help="predict every this many expert steps")
    ap.add_argument(
        "--seed", type=int, default=100000, help="seed of the first episode (the demos' eval seeds)"
    )
    args = ap.parse_args()
    bundles = [b for b in args.bundles.split(",") if b]
    for b in bundles:
        if not Path(b, "policy.json").is_file():
            raise SystemExit(f"--bundles: {b} is not a jrobot bundle (no policy.json)")
    if args.samples < 1 or args.stride < 1 or args.episodes < 2:
        raise SystemExit(
            "--samples and --stride must be >= 1, --episodes >= 2 (images are swapped between them)"
        )
    result: dict[str, Any] = {
        "benchmark": "policy_precision",
        "load_avg_start": os.getloadavg(),
        "env": args.env,
    }
    table = measure(bundles, args.env, args.episodes, args.samples, args.stride, args.seed)
    base = table[bundles[0]]["all"]["a0"]
    phases = list(table[bundles[0]])
    print(f"errors on the expert's states ({args.episodes} episodes of {args.env}); arm: degrees, gripper: %")
    print("| bundle | phase | states | a0 | grip0 | a10 | spread | a10, other images |")
    print("|---|---|---|---|---|---|---|---|")
    for b in bundles:
        label = "/".join(Path(b).resolve().parts[-2:])
        for ph in phases:
            r = table[b][ph]
            print(
                f"| {label} | {ph} | {r['n']} | {r['a0']:.2f} | {r['grip0']:.2f} | {r['a10']:.2f} | "
                f"{r['spread']:.2f} | {r['a10_other_images']:.2f} |"
            )
    reach = phases[0]  # the expert's first move, towards the cube: where the cube's place decides
    for b in bundles:
        r = table[b][reach]
        looks = r["a10_other_images"] / r["a10"] if r["a10"] > 0 else float("inf")
        print(
            f"{b}: {reach} a10 error x{looks:.2f} with another episode's images (near 1: the cameras barely matter)"
        )
    for b in bundles[1:]:
        ratio = table[b]["all"]["a0"] / base if base > 0 else float("inf")
        print(f"RATIO a0 error {b} / baseline {bundles[0]}: {ratio:.2f} (lower is better)")
    result["bundles"] = table
    print_result(result)


if __name__ == "__main__":
    main()

"""`python -m jrobot.eval`: success rate of a policy bundle in the MuJoCo simulation, with videos.

    python -m jrobot.eval --policy=bundles/act --env=jrobot/SO101PickPlace-v0 --episodes=50 --out=eval/act
    python -m jrobot.eval --policy=bundles/act --episodes=50 --num_envs=4 --out=eval/act4   # 4 at a time
    python -m jrobot.eval --policy=ws://gpu-box:8000 --episodes=50 --out=eval/served   # a jrobot.serve server

Flags follow `jrobot.run`'s grammar (`--name=value` or `--name value`, dashes or underscores):
`--seed` (of the first episode, default 100000), `--max_steps`, `--videos=false`,
`--n_action_steps`, `--temporal_ensemble_coeff`, `--task` (the instruction of a language-conditioned
policy; by default the env's own, `info["task"]` at reset, which is what the simulator records with),
`--num_envs` (episodes run at once, default 1), `--exact` (with `--num_envs`: one policy call per env).

Each episode is seeded (`--seed` + episode number), so two evaluations of the same bundle see the same
cube placements. The policy runs through the same controller as on the real robot (`jrobot.runtime`),
in synchronous mode: the simulator's clock advances one control period per action, so results do not
depend on how fast this machine is. `DIR/report.json` holds `success_rate`, its 95% confidence
interval (`success_ci95`, Wilson's score interval), per-episode results and timing;
`DIR/videos/episode_NNN.mp4` shows the policy's cameras side by side; `DIR/success_vs_time.png` plots
the fraction of episodes solved within t seconds of simulated time (an episode counts from the step
its task's success test first held, `success_step`, at 1/fps s a step), with Wilson's interval as a
band. Its right end is the success rate; its shape says how fast the policy solves the task, in the
simulator's time, which neither this machine's speed nor N changes.

Vectorized evaluation (`--num_envs N`): N episodes run at once, each env in its own worker process
(`jrobot.sim.vector`, which says why not gymnasium's vector envs). A worker runs whole episodes
through the same loop as N = 1 (`run_episode`, `PolicyController`, safety clamp, video), but its
policy's `predict` is a request to this process, which holds the policy: when every busy worker has
asked for a chunk (or finished its episode), the requests are stacked into ONE `policy.predict` call
(rows in worker order, each language row with its own instruction) and the chunks sent back. A worker
that finishes an episode is handed the next one; episode i always runs from seed `--seed` + i,
whichever worker runs it. A served policy (`--policy ws://...`) gets the batch as one request (the
server's `--max_batch`, 8 by default, bounds N; such rows carry no control timestep). Starting and
closing the workers costs about 0.7 s of CPU per env (its interpreter, env and renderer). The report
matches N = 1's episode by episode (timing aside) to this criterion:
- XLA's CPU kernels round differently for different batch sizes (bitwise the same for the same row
  anywhere in a batch of one size, not across sizes: the parity ACT's chunks differ by ~1e-5 degrees
  between batch 1 and 4). The same observations give the same first chunk to 1e-4, and the tests
  hold N = 1 and N > 1 to the same per-episode outcome (success, steps, success step, wrong object,
  task) on short episodes. Over long ones the difference grows wherever it flips a camera pixel:
  over 30 full episodes of the demo's ACT, 10 (N = 4) and 11 (N = 2) ended 1 to 9 steps away from
  N = 1's, every success agreed (96.7% each). `--exact` makes one policy call per env (batch size 1,
  as N = 1): bit for bit N = 1's actions and report, at the price of the batching.
- A stochastic policy (Diffusion, SmolVLA) gets each episode's initial noise from a generator of its
  own, seeded by the episode's seed (`noise_generator`) and passed as `predict(noise=...)`, for N = 1
  as for N > 1, so the draws do not depend on which episodes share a call. (A DDPM scheduler still
  draws its per-step noise from the policy's own key, which is not per row; DDIM and flow matching
  take all their randomness from the initial noise. A policy that ignores `noise=`, e.g. the trainer's
  in-memory model, is seeded per episode as before: exact for N = 1 only.)
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jrobot.cli import Binder, CliError, run_tool
from jrobot.runtime.evaluate import evaluate
from jrobot.runtime.sources import RemoteOptions, open_policy

USAGE = __doc__ or ""


@dataclasses.dataclass
class EvalOptions:
    """`python -m jrobot.eval` flags, in the grammar of `jrobot.run` (`--name=value`, `--name value`)."""

    policy: str  # policy bundle (python -m jrobot.export), or a jrobot.serve server: ws://HOST:PORT
    out: Path  # output directory (report.json, success_vs_time.png, videos/)
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
    num_envs: int = 1  # episodes run at once (each env in a worker process; batched policy calls)
    exact: bool = False  # with num_envs > 1: one policy call per env, bit for bit num_envs=1's actions
    token_file: Path | None = None  # the server's shared secret (--policy ws://...)
    remote: RemoteOptions | None = None  # --remote.timeout_s, --remote.reconnect

    def __post_init__(self) -> None:
        self.policy = str(self.policy)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
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
    batch = min(args.num_envs, args.episodes)
    if batch > 1 and not args.exact:
        policy.warmup(batch=batch)  # the batch of every env (smaller ones compile when first met)
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
            num_envs=args.num_envs,
            exact=args.exact,
        )
    finally:
        if hasattr(policy, "close"):
            policy.close()
    lo, hi = report["success_ci95"]
    n = report["num_envs"]
    print(
        f"success rate {report['success_rate']:.1%} over {report['num_episodes']} episodes "
        f"(95% CI {lo:.1%}-{hi:.1%}; {report['wall_s']:.0f} s, {n} env{'s' if n > 1 else ''}); "
        f"report: {args.out / 'report.json'}, videos: {args.out / 'videos'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

"""The training loop: shards -> grain pipeline -> jitted, sharded train step -> orbax checkpoints.

Structure (big_vision style): build the mesh, the policy and the optimizer; `eval_shape` the train state
to get its structure, derive shardings from the config's rules, then run a jitted init with those
out_shardings (or restore the newest checkpoint into them). The step is jitted once with the state
donated. Everything a resumed or exported run needs is in the checkpoint: the train state, the data
iterator state of every process, and the config/spec/stats metadata.

Train state (a plain dict pytree):
  step      int32 scalar, optimizer steps taken
  params    nnx.State of the trainable nnx.Param leaves
  frozen    nnx.State of everything else in the model (normalisation stats, frozen BN, tables)
  opt_state optax state
  rng       PRNG key (uint32[2]), split every step
  ema       (optional) EMA of params, for policies whose preset asks for one

A language-conditioned policy (`spec.language_keys`, e.g. SmolVLA) gets each sample's task instruction
as token ids and a mask: the pipeline gives every sample its shard set and task index, and
`jrobot.train.task_tokens.TaskTokenTable` (the shards' task lists tokenized once with the model's own
tokenizer) adds the LANGUAGE inputs on the host before the batch goes to the devices (`TrainSetup.to_device`),
for training and the validation loss alike; the sim evaluation tokenizes the env's instruction with the
same tokenizer (`jrobot.train.sim_eval.ModelPolicy`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jrobot.features import ACTION_KEY
from jrobot.language import TaskTokenizer
from jrobot.pipeline.augment import AugmentConfig
from jrobot.pipeline.device import GlobalBatcher
from jrobot.pipeline.loader import DataLoader, PipelineConfig, make_eval_dataset, make_train_dataset
from jrobot.pipeline.windows import WindowSpec
from jrobot.policies.base import PolicyModule, load_policy_module
from jrobot.policies.spec import PolicySpec, stats_to_json
from jrobot.shards.format import ShardSet
from jrobot.train import sharding as shd
from jrobot.train.checkpoint import Checkpointer
from jrobot.train.config_util import ConfigError, as_plain_dict, setting
from jrobot.train.export import language_tokenizer
from jrobot.train.metrics_log import MetricsLogger
from jrobot.train.optim import apply_overrides, make_optimizer
from jrobot.train.task_tokens import TaskTokenTable
from jrobot.train.time_fit import StepFitter, saved_fit

log = logging.getLogger("jrobot.train")

BOOKKEEPING_KEYS = ("index", "dataset_index", "episode_index", "task_index")


@dataclasses.dataclass
class Policy:
    """A policy type's module plus the objects built from the run config.

    `config` is the built model's own (what a checkpoint records: e.g. SmolVLA fills in its VLM's
    architecture and folder when it is built); `tokenizer` is the model's task tokenizer, set for
    language-conditioned policies only.
    """

    module: PolicyModule
    config: Any
    spec: PolicySpec
    graphdef: Any
    features: dict[str, Any]
    stats: dict[str, dict[str, np.ndarray]]
    tokenizer: TaskTokenizer | None = None


def as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def policy_config_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return as_plain_dict(setting(config, "policy.config"))


def merged_stats(shard_sets: list[ShardSet]) -> dict[str, dict[str, np.ndarray]]:
    """Normalisation stats over all training shard sets (count-weighted, LeRobot's aggregation)."""
    if len(shard_sets) == 1:
        return shard_sets[0].stats
    from jrobot.data.format.stats import aggregate_stats

    return aggregate_stats([s.stats for s in shard_sets])


def build_policy(config: ml_collections.ConfigDict, shard_sets: list[ShardSet]) -> tuple[Policy, nnx.Module]:
    module = load_policy_module(setting(config, "policy.type"))
    pcfg = module.Config.from_dict(policy_config_dict(config))
    features = dict(shard_sets[0].features)
    for s in shard_sets[1:]:
        for k, f in s.features.items():
            if k in features and features[k].shape != f.shape:
                raise ValueError(f"shard sets disagree on feature {k!r}: {features[k].shape} vs {f.shape}")
    selected = as_list(setting(config, "policy.input_features"))
    if selected:
        unknown = [k for k in selected if k not in features]
        if unknown:
            raise ValueError(
                f"policy.input_features {unknown} are not in the shards (have {sorted(features)})"
            )
        features = {k: f for k, f in features.items() if k in selected or k == ACTION_KEY}
    stats = merged_stats(shard_sets)
    model = module.build(pcfg, features, stats, seed=int(setting(config, "seed")))
    graphdef, _, _ = nnx.split(model, nnx.Param, ...)
    built_config = getattr(model, "config", pcfg)
    policy = Policy(module, built_config, model.spec, graphdef, features, stats, language_tokenizer(model))
    return policy, model


def window_for(spec: PolicySpec) -> WindowSpec:
    obs = spec.observation_delta_indices or (0,)
    state_keys = [k for k in (spec.state_key, spec.env_state_key) if k]
    return WindowSpec.for_policy(
        observation_deltas=obs,
        action_deltas=spec.action_delta_indices,
        state_keys=state_keys,
        camera_keys=spec.image_keys,
        drop_last_frames=spec.drop_n_last_frames,
    )


def pipeline_config(config: ml_collections.ConfigDict, spec: PolicySpec) -> PipelineConfig:
    def data(key: str) -> Any:
        return setting(config, f"data.{key}")

    augment = data("augment")
    return PipelineConfig(
        shards=as_list(data("shards")),
        window=window_for(spec),
        batch_size=int(setting(config, "batch_size")),
        weights=as_list(data("weights")) or None,
        seed=int(setting(config, "seed")),
        episodes=as_list(data("episodes")) or None,
        tasks=as_list(data("tasks")) or None,
        val_fraction=float(data("val_fraction")),
        val_episodes=as_list(data("val_episodes")) or None,
        augment=AugmentConfig.from_dict(as_plain_dict(augment) if augment is not None else None),
        num_workers=int(data("num_workers")),
        read_threads=int(data("read_threads")),
        prefetch=int(data("prefetch")),
        episode_start_frames=int(data("episode_start_frames")),
        episode_start_repeats=int(data("episode_start_repeats")),
    )


def make_train_step(policy: Policy, tx: optax.GradientTransformation, lr_fn, accum_steps: int, ema_cfg):
    """The pure train step (state, batch) -> (state, metrics), with optional gradient accumulation."""
    module, graphdef = policy.module, policy.graphdef

    def loss_fn(params, frozen, batch, rng):
        model = nnx.merge(graphdef, params, frozen)
        loss, metrics = module.loss(model, batch, rng)
        return loss, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, batch):
        rng, step_rng = jax.random.split(state["rng"])
        params, frozen = state["params"], state["frozen"]
        if accum_steps == 1:
            (loss, metrics), grads = grad_fn(params, frozen, batch, step_rng)
        else:
            micro = jax.tree.map(
                lambda x: x.reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:]), batch
            )
            rngs = jax.random.split(step_rng, accum_steps)

            def body(carry, xs):
                mb, r = xs
                (loss_i, metrics_i), g = grad_fn(params, frozen, mb, r)
                acc = jax.tree.map(jnp.add, carry, (g, loss_i, metrics_i))
                return acc, None

            zeros = jax.tree.map(jnp.zeros_like, params)
            _, m0 = jax.eval_shape(loss_fn, params, frozen, jax.tree.map(lambda x: x[0], micro), rngs[0])
            init = (
                zeros,
                jnp.zeros((), jnp.float32),
                jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m0),
            )
            (grads, loss, metrics), _ = jax.lax.scan(body, init, (micro, rngs))
            grads = jax.tree.map(lambda g: g / accum_steps, grads)
            loss = loss / accum_steps
            metrics = jax.tree.map(lambda m: m / accum_steps, metrics)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_state = dict(state, step=state["step"] + 1, params=new_params, opt_state=opt_state, rng=rng)
        if ema_cfg is not None:
            from jrobot.policies.ema import ema_update

            new_state["ema"] = ema_update(state["ema"], new_params, state["step"], ema_cfg)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads), lr=lr_fn(state["step"]))
        return new_state, metrics

    return step


def run_meta(config: ml_collections.ConfigDict, policy: Policy, shard_sets: list[ShardSet]) -> dict[str, Any]:
    return {
        "jrobot_checkpoint": 1,
        "config": json.loads(config.to_json_best_effort()),
        "policy_type": policy.spec.type,
        "policy_config": policy.config.to_dict(),
        "spec": policy.spec.to_json(),
        "stats": stats_to_json(policy.stats),
        "features": {k: f.to_json() for k, f in policy.features.items()},
        "fps": shard_sets[0].fps,
        "robot_type": shard_sets[0].manifest.robot_type,
        "shards": [str(s.path) for s in shard_sets],
    }


@dataclasses.dataclass
class TrainSetup:
    """Everything a training loop needs, built from the config for one mesh."""

    policy: Policy
    mesh: Any
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings
    state_sharding: Any
    batcher: GlobalBatcher
    init: Any  # () -> a fresh, sharded train state (jitted)
    step: Any  # (state, batch) -> (state, metrics) (jitted, state donated)
    task_tokens: TaskTokenTable | None = None  # language policies: (shard set, task) -> LANGUAGE inputs
    step_for: Any = None  # num_steps -> `step` with the learning-rate schedule laid over num_steps

    def to_device(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """A host batch of the pipeline -> the global batch the step takes (LANGUAGE inputs added first)."""
        if self.task_tokens is not None:
            batch = self.task_tokens(batch)
        return self.batcher(batch)


@dataclasses.dataclass
class StatePlan:
    """The train state's layout: optimizer, init function, abstract state and its shardings."""

    tx: optax.GradientTransformation
    lr_fn: Any
    ema: Any
    init_state: Any  # (params, frozen) -> state
    abstract: Any  # ShapeDtypeStructs carrying their shardings
    sharding: Any


def run_optimizer(
    config: ml_collections.ConfigDict, module: Any, policy_config: Any, params: Any, num_steps: int
) -> tuple[optax.GradientTransformation, Any]:
    """(optax transform, lr schedule) of the run: the policy's preset with the config's overrides, its
    schedule laid over `num_steps` (the state's layout does not depend on it)."""
    preset = apply_overrides(
        module.optimizer_preset(policy_config), as_plain_dict(setting(config, "optimizer"))
    )
    return make_optimizer(preset, params, module.param_group, num_steps)


def plan_train_state(
    config: ml_collections.ConfigDict, module: Any, policy_config: Any, params: Any, frozen: Any, mesh: Any
) -> StatePlan:
    """Optimizer state for the trainable `params` only (frozen parts are buffers in `frozen`), and every
    leaf's sharding from `config.sharding_rules`. Works on abstract params (`nnx.eval_shape`), so a
    model's layout on a mesh can be checked without allocating it."""
    tx, lr_fn = run_optimizer(config, module, policy_config, params, int(setting(config, "num_steps")))
    ema_cfg = module.ema_preset(policy_config) if setting(config, "ema") else None

    def init_state(params, frozen):
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "frozen": frozen,
            "opt_state": tx.init(params),
            "rng": jax.random.PRNGKey(int(setting(config, "seed")) + 1),
        }
        if ema_cfg is not None:
            state["ema"] = jax.tree.map(jnp.copy, params)
        return state

    abstract = jax.eval_shape(init_state, params, frozen)
    rules = [tuple(r) for r in setting(config, "sharding_rules")]
    sharding = shd.param_shardings(abstract, mesh, rules)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, sharding
    )
    return StatePlan(tx, lr_fn, ema_cfg, init_state, abstract, sharding)


def setup_training(config: ml_collections.ConfigDict, mesh: Any, shard_sets: list[ShardSet]) -> TrainSetup:
    """Policy, optimizer, state shardings and the jitted init/step for `mesh` (big_vision style)."""
    policy, model = build_policy(config, shard_sets)
    _, params0, frozen0 = nnx.split(model, nnx.Param, ...)
    del model
    plan = plan_train_state(config, policy.module, policy.config, params0, frozen0, mesh)
    tx, lr_fn, ema_cfg, init_state = plan.tx, plan.lr_fn, plan.ema, plan.init_state
    abstract, state_sharding = plan.abstract, plan.sharding
    batcher = GlobalBatcher(mesh, drop_keys=BOOKKEEPING_KEYS)
    task_tokens = TaskTokenTable.for_policy(policy.spec, policy.tokenizer, shard_sets)
    init_jit = jax.jit(init_state, out_shardings=state_sharding)
    accum = int(setting(config, "grad_accum_steps"))

    def jit_step(tx: optax.GradientTransformation, lr_fn: Any) -> Any:
        return jax.jit(
            make_train_step(policy, tx, lr_fn, accum, ema_cfg),
            in_shardings=(state_sharding, batcher.sharding),
            out_shardings=(state_sharding, None),
            donate_argnums=0,
        )

    def step_for(num_steps: int) -> Any:
        tx2, lr2 = run_optimizer(config, policy.module, policy.config, params0, num_steps)
        same = jax.tree.structure(jax.eval_shape(tx2.init, params0)) == jax.tree.structure(
            jax.eval_shape(tx.init, params0)
        )
        if not same:  # never expected: a schedule is a function of the step count, not state
            raise RuntimeError("the optimizer state's layout depends on num_steps; cannot refit the schedule")
        return jit_step(tx2, lr2)

    train_step = jit_step(tx, lr_fn)
    return TrainSetup(
        policy=policy,
        mesh=mesh,
        abstract_state=abstract,
        state_sharding=state_sharding,
        batcher=batcher,
        init=lambda: init_jit(params0, frozen0),
        step=train_step,
        task_tokens=task_tokens,
        step_for=step_for,
    )


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, float]:
    """Train (or resume) into `workdir`; returns the last logged metrics (with steps/s of that window)
    and `steps`, the optimizer steps the run has taken (fewer than num_steps if its time ran out)."""
    t_start = time.monotonic()
    workdir = Path(workdir)
    pidx, pcount = jax.process_index(), jax.process_count()
    mesh = shd.make_mesh(**as_plain_dict(setting(config, "mesh")))
    shard_sets = [ShardSet(p) for p in as_list(setting(config, "data.shards"))]
    workdir.mkdir(parents=True, exist_ok=True)  # once the data is known good: a typo leaves no empty run
    setup = setup_training(config, mesh, shard_sets)
    policy = setup.policy
    total_steps = int(setting(config, "num_steps"))

    pcfg = pipeline_config(config, policy.spec)
    loader = DataLoader(
        make_train_dataset(pcfg, process_index=pidx, process_count=pcount), to_device=setup.to_device
    )
    ckpt = Checkpointer(
        workdir / "checkpoints",
        keep=int(setting(config, "checkpoint.keep")),
        async_save=bool(setting(config, "checkpoint.async_save")),
    )
    meta = run_meta(config, policy, shard_sets)
    start = ckpt.latest_step
    if start is not None:
        state, _ = ckpt.restore(start, setup.abstract_state, loader.iterator)
        log.info("resumed from step %d in %s", start, ckpt.directory)
    else:
        state = setup.init()
        start = 0
    train_step = setup.step
    time_limit = setting(config, "max_train_seconds")
    fit_to_time = bool(time_limit) and bool(setting(config, "fit_steps_to_time"))
    fitter = None
    if fit_to_time:
        fitted = saved_fit(workdir, total_steps)
        if fitted is not None:  # an earlier try of this run fitted its schedule: keep it
            total_steps = fitted
            train_step = setup.step_for(fitted)
        elif start == 0:
            fitter = StepFitter(workdir, start, total_steps, float(time_limit), t_start, time.monotonic())

    logger = MetricsLogger(config, workdir, total_steps=total_steps, is_main=pidx == 0)
    every = int(setting(config, "checkpoint.every"))
    log_every = int(setting(config, "log_every"))
    eval_cfg = as_plain_dict(setting(config, "eval"))
    eval_every = int(setting(config, "eval.every") or 0)
    validate = make_validation(setup, pcfg, config)
    val_every = int(setting(config, "validation.every") or 0) or every
    last: dict[str, float] = {}
    step = start
    pending = None
    try:
        logger.start_window(step, loader.wait_s)
        if fitter is not None:
            fitter.t_loop = time.monotonic()
        while step < total_steps:
            batch = next(loader)
            state, metrics = train_step(state, batch)
            step += 1
            pending = metrics
            if fitter is not None and not fitter.done:
                jax.block_until_ready(metrics)  # ~110 steps timed as they finish, not as dispatched
                fitted = fitter.after_step(step, time.monotonic())
                if fitted is not None:
                    total_steps = logger.total_steps = fitted
                    train_step = setup.step_for(fitted)
            out_of_time = bool(time_limit) and step % 10 == 0 and _time_is_up(t_start, float(time_limit))
            end = step == total_steps or out_of_time
            if step % log_every == 0 or end:
                last = {k: float(v) for k, v in jax.device_get(pending).items()}
                last = {k: v for k, v in logger.log(step, last, loader.wait_s).items() if k != "step"}
            if step % every == 0 or end:
                ckpt.save(step, state, loader.get_state(), meta)
            if validate is not None and (step % val_every == 0 or end):
                val = validate(state)
                logger.log_eval(step, val)
                last.update(val)
            if eval_every and (step % eval_every == 0 or end):
                last.update(_evaluate(policy, state, eval_cfg, step, logger, fps=shard_sets[0].fps))
            if out_of_time:
                log.warning(
                    "max_train_seconds=%s reached: stopped at step %d of %d", time_limit, step, total_steps
                )
                break
    finally:
        ckpt.close()
        loader.close()
        logger.close()
    last["steps"] = float(step)
    return last


def make_validation(
    setup: TrainSetup, pcfg: PipelineConfig, config: ml_collections.ConfigDict
) -> Callable[[Mapping[str, Any]], dict[str, float]] | None:
    """The loss on the held-out episodes as `state -> {"val/loss": ..., "val/<metric>": ...}`, or None.

    It is the training objective, evaluated in one ordered pass over the validation split (no
    augmentation, the last partial batch dropped) with a fixed RNG, so two validations differ only by
    the parameters. The EMA parameters are used where the run keeps them, as export and the sim eval do.
    Every process reads its slice of the split; the means are over the global batches.
    """
    if not (pcfg.val_fraction or pcfg.val_episodes):
        return None
    policy = setup.policy
    module, graphdef = policy.module, policy.graphdef
    val_cfg = dataclasses.replace(pcfg, num_workers=0, augment=None)
    max_batches = int(setting(config, "validation.max_batches") or 0)
    pidx, pcount = jax.process_index(), jax.process_count()

    def loss_fn(params, frozen, batch):
        loss, metrics = module.loss(nnx.merge(graphdef, params, frozen), batch, jax.random.PRNGKey(0))
        return dict(metrics, loss=loss)

    sharding = setup.state_sharding
    fn = jax.jit(loss_fn, in_shardings=(sharding["params"], sharding["frozen"], setup.batcher.sharding))

    def run(state: Mapping[str, Any]) -> dict[str, float]:
        params = state.get("ema", state["params"])
        totals, n = None, 0
        for batch in make_eval_dataset(val_cfg, split="val", process_index=pidx, process_count=pcount):
            m = fn(params, state["frozen"], setup.to_device(batch))
            totals = m if totals is None else jax.tree.map(jnp.add, totals, m)
            n += 1
            if max_batches and n >= max_batches:
                break
        if n == 0:
            raise ConfigError(
                f"the validation split holds fewer windows than one batch of {pcfg.batch_size} "
                "(raise data.val_fraction or list more data.val_episodes)"
            )
        return {f"val/{k}": float(v) / n for k, v in jax.device_get(totals).items()}

    return run


def _time_is_up(t_start: float, limit_s: float) -> bool:
    """Whether the run's time budget is spent; process 0 decides for all so every host stops together."""
    up = time.monotonic() - t_start >= limit_s
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        up = bool(multihost_utils.broadcast_one_to_all(np.asarray(up)))
    return up


def _evaluate(
    policy: Policy, state: Mapping[str, Any], eval_cfg: Mapping[str, Any], step: int, logger, *, fps: int
) -> dict:
    """Roll the current policy out in the simulator (process 0 only) and log the success rate."""
    if jax.process_index() != 0:
        return {}
    from jrobot.train.sim_eval import evaluate_model

    params = state.get("ema", state["params"])
    model = nnx.merge(policy.graphdef, jax.device_get(params), jax.device_get(state["frozen"]))
    result = evaluate_model(
        model,
        features=policy.features,
        fps=fps,
        env_id=eval_cfg["env"],
        episodes=int(eval_cfg["episodes"]),
        seed=int(eval_cfg["seed"]),
    )
    metrics = {"eval/success_rate": float(result["success_rate"])}
    logger.log_eval(step, metrics)
    return metrics

"""The run settings every experiment shares: data, pipeline, mesh, checkpoints, logging, evaluation.

Not an experiment itself: `configs/<experiment>.py` starts from `run_config()` and adds its policy and
optimizer. The trainer has no defaults of its own (it reads every setting from the config and names a
missing one), so what a run does is all written here or in the experiment's file, and shows up in the
checkpoint's copy of the config.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def run_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 1000
    c.batch_size = 64
    c.num_steps = 100_000
    c.grad_accum_steps = 1
    c.max_train_seconds = 0.0  # > 0: stop (with a checkpoint) once the run has taken this long
    # With max_train_seconds: time the first steps and, where num_steps would not fit, lay the
    # learning-rate schedule over the steps that do (jrobot.train.time_fit), rather than stop mid-schedule
    c.fit_steps_to_time = False
    c.log_every = 100
    c.ema = True  # keep an EMA of the parameters when the policy's preset asks for one

    c.data = ml_collections.ConfigDict()
    c.data.shards = "outputs/sim/shards"  # one shard folder, or several to mix
    c.data.weights = placeholder(tuple)  # mixing weights when data.shards lists several sets
    c.data.episodes = placeholder(tuple)  # train on these episodes only (every shard set)
    c.data.tasks = placeholder(tuple)  # train on frames of these tasks only
    # Held-out episodes: a fraction drawn per shard set (seeded), or an explicit list. Their loss is
    # computed every `validation.every` steps and logged as val/*.
    c.data.val_fraction = 0.0
    c.data.val_episodes = placeholder(tuple)
    c.data.num_workers = 8  # decoding worker processes; 0 = threads of the training process
    c.data.read_threads = 4
    c.data.prefetch = 4  # batches buffered per worker
    # Each episode's first `episode_start_frames` frames drawn 1 + `episode_start_repeats` times per epoch
    # (0 = off): where only the instruction says where to go (jrobot.pipeline.windows).
    c.data.episode_start_frames = 0
    c.data.episode_start_repeats = 0
    c.data.augment = None  # e.g. {"color_jitter": True, "random_crop_scale": (0.8, 1.0)}

    c.policy = ml_collections.ConfigDict()
    c.policy.type = placeholder(str)  # set by the experiment
    c.policy.input_features = placeholder(tuple)  # None: every feature of the shards

    c.optimizer = ml_collections.ConfigDict(
        {
            "lr": 1e-4,
            "group_lr": {},
            # unset name: the policy preset's schedule; see jrobot.train.optim
            "scheduler": {"name": placeholder(str), "num_warmup_steps": 0},
        }
    )

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
    c.sharding_rules = [(".*", "fsdp")]

    c.checkpoint = ml_collections.ConfigDict({"every": 5000, "keep": 3, "async_save": True})
    c.wandb = ml_collections.ConfigDict(
        {k: placeholder(str) for k in ("project", "mode", "entity", "name", "id")}
    )  # mode: online/offline/disabled; offline unless a project is set
    # Rollouts of the current policy in the simulator (process 0), logged as eval/success_rate.
    c.eval = ml_collections.ConfigDict(
        {"every": 0, "env": "jrobot/SO101PickPlace-v0", "episodes": 20, "seed": 10_000}
    )
    # Loss on the held-out episodes (data.val_fraction / data.val_episodes); 0 = at every checkpoint.
    # max_batches > 0 caps each pass.
    c.validation = ml_collections.ConfigDict({"every": 0, "max_batches": 0})
    return c

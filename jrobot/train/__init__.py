"""Training: `python -m jrobot.train --config configs/<name>.py --workdir DIR`.

- `trainer`: the loop (mesh, jitted sharded step, checkpoints, logging, optional sim evaluation)
- `sharding`: the (data, fsdp) mesh and parameter sharding rules
- `optim`: optax optimizers from a policy's LeRobot preset
- `checkpoint`: orbax checkpoints of train state + data iterator + run metadata
- `metrics_log`: console progress line and wandb
"""

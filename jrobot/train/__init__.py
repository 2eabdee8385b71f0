"""Training: `python -m jrobot.train --config configs/<name>.py --workdir DIR`.

- `trainer`: the loop (mesh, jitted sharded step, checkpoints, logging, optional sim evaluation)
- `sharding`: the (data, fsdp) mesh and parameter sharding rules
- `optim`: optax optimizers from a policy's LeRobot preset
- `checkpoint`: orbax checkpoints of train state + data iterator + run metadata
- `metrics_log`: console progress line and wandb
"""

from jrobot.compile_cache import enable_compile_cache
from jrobot.malloc_tuning import keep_freed_memory

# In the package's __init__, so it runs before any of its modules, or a library they import, starts a
# thread: glibc keeps a thread on the arena it first used, and XLA's threads must use the one shared
# heap for each step to reuse the last one's memory.
keep_freed_memory()
# Before the first compile: a command's programs are loaded from the last run's instead of compiled.
enable_compile_cache()

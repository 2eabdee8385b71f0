"""Running a policy in real time: a bundle here on the CPU (jax, no training stack), or one served.

`policy.BundlePolicy` executes a bundle; `observations.ObservationBuilder` turns robot readings into
its inputs with the same image transform as the shards; `loop` is the control loop (background
inference, the action schedule or temporal ensembling, holding and timing out, safety) that
`jrobot.run` and `jrobot.eval` share; `sources.open_policy` opens a bundle folder or a server address
(`jrobot.serving.client`) as the loop's policy.
"""

from jrobot.malloc_tuning import keep_freed_memory

# In the package's __init__, so it runs before any of its modules, or a library they import, starts a
# thread: glibc keeps a thread on the arena it first used, and XLA's threads must use the one shared
# heap for each call to reuse the last one's memory.
keep_freed_memory()

"""Running an exported policy bundle in real time, on a CPU, with jax but without the training stack.

`policy.BundlePolicy` executes the bundle; `policy.ObservationBuilder` turns robot readings into its
inputs with the same image transform as the shards; `loop` is the control loop (background inference,
action queue or temporal ensembling, safety) that `jrobot.run` and `jrobot.eval` share.
"""

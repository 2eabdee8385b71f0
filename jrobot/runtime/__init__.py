"""Running a policy in real time: a bundle here on the CPU (jax, no training stack), or one served.

`policy.BundlePolicy` executes a bundle; `observations.ObservationBuilder` turns robot readings into
its inputs with the same image transform as the shards; `loop` is the control loop (background
inference, the action schedule or temporal ensembling, holding and timing out, safety) that
`jrobot.run` and `jrobot.eval` share; `sources.open_policy` opens a bundle folder or a server address
(`jrobot.serving.client`) as the loop's policy.
"""

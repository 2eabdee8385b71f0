"""The grain input pipeline: training shards -> windows -> shuffled, mixed, augmented batches -> device.

`loader` assembles it (`make_train_dataset`, `make_eval_dataset`, `DataLoader`); `sampling` decides
which windows each batch reads, `windows` reads them from `jrobot.shards`, `workers` decodes in
shared-memory worker processes, `device` puts batches on the mesh (the only jax here). Never imports
the policies: it yields the batch layout of the policy contract, whatever the policy.
"""

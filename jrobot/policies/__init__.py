"""Policies: Flax NNX modules with LeRobot parity, plus their specs, importers and shared pieces.

This package `__init__` imports nothing on purpose: the real-time runtime imports
`jrobot.policies.ensemble` and `jrobot.policies.spec` (numpy only) and must not pay for jax/flax.

Layout (one job per module):
- `spec`: feature types, `PolicyFeature`, the JSON-serializable `PolicySpec` (numpy only).
- `ensemble`: ACT temporal ensembling and the action queue (numpy only).
- `base`: the common policy interface, `load_policy_module(type)`, parameter partitioning.
- `normalize`: LeRobot's normalization modes as pure jnp functions, and the in-model `Normalizer`.
- `layers`: torch-compatible building blocks (initializers, multi-head attention, dropout, buffers).
- `statedict`: torch state_dict <-> NNX mapping with strict key checking.
- `resnet`: torchvision-exact ResNet18/34 trunks (frozen BN, GroupNorm or batch norm).
- `torch_zip`: a safe reader for torch `.pth` zip checkpoints (no torch needed).
- `lerobot_checkpoint`: reading LeRobot `pretrained_model` folders (config, weights, stats).
- `act`: ACT (config, model, loss, sampling, importer); other policies sit beside it the same way.

A policy of type `<t>` lives in `jrobot.policies.<t>`; see `base.load_policy_module`.
"""

"""Policies: Flax NNX modules with LeRobot parity, behind one typed contract.

The contract (`base.PolicyModule`, a `typing.Protocol`): a policy type `<t>` is the package
`jrobot.policies.<t>`, found by name (no central registry), which provides its `Config` class,
`make_spec`, `build`, `loss`, `sample_actions`, `from_lerobot`, `param_group`, `optimizer_preset` and
`ema_preset` (None when it keeps no EMA). `base.load_policy_module(t)` checks every member and names what
is missing. What the pipeline, trainer, exporter and runtime need to know about a policy is a typed
field of its `spec.PolicySpec` (history length, horizon, executed steps, the noise shape of a
stochastic sampler, frames to drop), so none of them probes a module or reads policy config keys: a new
policy (e.g. a VLA with flow matching and language inputs) plugs in by filling those fields.

This package `__init__` imports nothing on purpose: the real-time runtime imports
`jrobot.policies.ensemble` and `jrobot.policies.spec` (numpy only) and must not pay for jax/flax.

Layout (one job per module):
- `spec`: feature types, `PolicyFeature`, the JSON-serializable `PolicySpec` (numpy only).
- `ensemble`: ACT temporal ensembling and the action queue (numpy only).
- `base`: the contract, `load_policy_module(type)`, parameter partitioning, shared input helpers.
- shared building blocks: `layers` (torch-compatible initializers, attention, dropout, buffers),
  `normalize` (LeRobot's normalization modes, the in-model `Normalizer`), `resnet` (torchvision-exact
  trunks), `spatial_softmax`, `schedulers` (DDPM/DDIM noise schedulers), `ema` (parameter EMA).
- `lerobot/`: LeRobot interop without torch: `statedict` (strict torch state_dict <-> NNX mapping),
  `torch_zip` (safe `.pth` reader), `checkpoint` (LeRobot `pretrained_model` folders), `importer`
  (`import_lerobot(path)` and the import routine the policies share).
- `act/`, `diffusion/`: one package per policy type, each split into `config` (the hyperparameter
  dataclass and its LeRobot mapping), `model` (the NNX modules; Diffusion's U-Net in `unet`) and
  `policy` (the contract's entry points), re-exported from the package `__init__`.
"""

"""LeRobot interop: reading LeRobot checkpoints and torch weights into jrobot policies, without torch.

Why one subpackage: these modules know LeRobot's and torch's file layouts and naming (the policies'
own code knows only their math), so a change in LeRobot's formats is handled here and nowhere else.

- `statedict`: torch state_dict <-> NNX mapping by module path, with strict key checking.
- `torch_zip`: a safe reader for torch `.pth` zip checkpoints (no torch, no arbitrary unpickling).
- `checkpoint`: reading LeRobot `pretrained_model` folders (config, weights, normalization stats).
- `importer`: the import routine the policies share (`build_from_lerobot`) and `import_lerobot(path)`,
  which finds the policy type in the folder's config.json.

This `__init__` imports nothing, so importing one module does not pull in the others.
"""

"""A LeRobot checkpoint's config.json: the bytes are the file, imported the way `import_lerobot` and
`build_from_lerobot` (jrobot/policies/lerobot/importer.py) import it, up to the model: `read_config`
(policy type, input/output features, normalization mapping, or the pre-0.2 `input_shapes` form), the
policy module the type names (`checkpoint_policy_module`), its config class's `from_lerobot`
(hyperparameters) and `make_spec` (the features the policy can read), each under `naming_file` as in
`build_from_lerobot`. Building the model and loading weights are left out (seconds per input; the
safetensors harness covers the weights).

The importer's own errors are ValueError and FileNotFoundError naming the file.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jrobot.policies.act
import jrobot.policies.diffusion
import jrobot.policies.smolvla  # noqa: F401  (imported by type at run time: here, so atheris instruments them)
from fuzz.harness import expect_own_error, scratch
from jrobot.policies.lerobot.checkpoint import CONFIG_FILE, naming_file, read_config
from jrobot.policies.lerobot.importer import checkpoint_policy_module


def import_config(folder: Path) -> None:
    """`import_lerobot` then `build_from_lerobot` minus the weights (the same calls, in the same order)."""
    module = checkpoint_policy_module(folder)
    _, cfg, inputs, outputs, mapping = read_config(folder)
    with naming_file(folder / CONFIG_FILE):
        config, _ = module.Config.from_lerobot(cfg)
        config = dataclasses.replace(config, normalization_mapping={k: v.value for k, v in mapping.items()})
    with naming_file(folder / CONFIG_FILE):
        module.make_spec(config, inputs, outputs)


def TestOneInput(data: bytes) -> None:
    folder = scratch("lerobot_config")
    (folder / CONFIG_FILE).write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expect_own_error(
            lambda: import_config(folder), exact=(ValueError, FileNotFoundError), names=str(folder)
        )

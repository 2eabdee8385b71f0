"""A LeRobot checkpoint's processor files: the bytes are policy_preprocessor.json of the ACT fixture,
read by `read_processor_stats` (which step normalizes, its state file, eps and norm_map), and then
the whole folder by `read_lerobot_checkpoint` minus the weights (a tiny model.safetensors)."""

from __future__ import annotations

import warnings

from fuzz.fuzz_lerobot_safetensors import build_checkpoint
from fuzz.harness import expect_own_error, put, scratch, seed
from jrobot.policies.lerobot.checkpoint import PREPROCESSOR_FILE, WEIGHTS_FILE, read_lerobot_checkpoint


def _build(folder) -> None:
    build_checkpoint(folder)
    put(folder, WEIGHTS_FILE, seed("lerobot_safetensors", "act_so101_tiny_head.safetensors"))


def TestOneInput(data: bytes) -> None:
    folder = scratch("lerobot_processor", _build)
    (folder / PREPROCESSOR_FILE).write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expect_own_error(
            lambda: read_lerobot_checkpoint(folder), exact=(ValueError, FileNotFoundError), names=str(folder)
        )

"""A LeRobot checkpoint's model.safetensors: the bytes are the weights of the ACT fixture's
`pretrained_model` folder, read by `read_lerobot_checkpoint` (safetensors, then the pre-0.4 legacy
normalization buffers taken out of the state dict) and by `resnet.read_weights_file` (a backbone
weights file given as .safetensors).

The checkpoint reader's own errors are ValueError and FileNotFoundError naming the file.
"""

from __future__ import annotations

import warnings

from fuzz.harness import expect_own_error, put, scratch, seed
from jrobot.policies.lerobot.checkpoint import (
    CONFIG_FILE,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    read_lerobot_checkpoint,
)
from jrobot.policies.resnet import read_weights_file

PRE_STATE = "policy_preprocessor_step_3_normalizer_processor.safetensors"
POST_STATE = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"


def build_checkpoint(folder) -> None:
    """The ACT fixture's pretrained_model folder, its weights left to the harness."""
    put(folder, CONFIG_FILE, seed("lerobot_config", "act_so101_tiny.json"))
    put(folder, PREPROCESSOR_FILE, seed("lerobot_processor", "act_so101_tiny_pre.json"))
    put(folder, POSTPROCESSOR_FILE, seed("lerobot_processor", "act_so101_tiny_post.json"))
    put(folder, PRE_STATE, seed("lerobot_safetensors", "act_so101_tiny_normalizer.safetensors"))
    put(folder, POST_STATE, seed("lerobot_safetensors", "act_so101_tiny_unnormalizer.safetensors"))


def TestOneInput(data: bytes) -> None:
    folder = scratch("lerobot_safetensors", build_checkpoint)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(data)
    own = (ValueError, FileNotFoundError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader's notes (stats ignored, ...) are not failures
        expect_own_error(lambda: read_lerobot_checkpoint(folder), exact=own, names=str(folder))
    expect_own_error(lambda: read_weights_file(weights), exact=own, names=str(weights))

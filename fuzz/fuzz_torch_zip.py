"""Torch `.pth` zip checkpoints (torchvision backbone weights): the bytes are the file, read by the
torch-free reader `read_torch_zip` through `resnet.read_weights_file`, as a policy's
`pretrained_backbone_path` is read.

Its own errors: ValueError (not a zip, not a state dict) and pickle.UnpicklingError (a pickle it
refuses: a forbidden global, a tensor overrunning its storage), each naming the file.
"""

from __future__ import annotations

import pickle

import jrobot.policies.lerobot.torch_zip  # noqa: F401  (read_weights_file imports it lazily: here, so atheris instruments it)
from fuzz.harness import expect_own_error, scratch
from jrobot.policies.resnet import read_weights_file


def TestOneInput(data: bytes) -> None:
    path = scratch("torch_zip") / "resnet18.pth"
    path.write_bytes(data)
    expect_own_error(
        lambda: read_weights_file(path), exact=(ValueError, pickle.UnpicklingError), names=str(path)
    )

"""A policy bundle's params.safetensors: the bytes are the file, read by `jrobot.bundle.read_params`."""

from __future__ import annotations

from fuzz.harness import expect_own_error, scratch
from jrobot.bundle import PARAMS, BundleError, read_params


def TestOneInput(data: bytes) -> None:
    bundle = scratch("bundle_params")
    (bundle / PARAMS).write_bytes(data)
    expect_own_error(lambda: read_params(bundle), own=(BundleError,), names=str(bundle))

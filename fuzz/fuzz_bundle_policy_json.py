"""A policy bundle's policy.json: the bytes are the file, read by `jrobot.bundle.read_info` (which
parses it with `BundleInfo.from_json`: spec, stats, features, image shapes, variants, language)."""

from __future__ import annotations

from fuzz.harness import expect_own_error, scratch
from jrobot.bundle import POLICY_JSON, BundleError, read_info


def TestOneInput(data: bytes) -> None:
    bundle = scratch("bundle_policy_json")
    (bundle / POLICY_JSON).write_bytes(data)
    expect_own_error(lambda: read_info(bundle), own=(BundleError,), names=str(bundle))

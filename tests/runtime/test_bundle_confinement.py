"""A bundle from a stranger must not make the runtime read outside its folder (issue 24)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jrobot.bundle import POLICY_JSON, BundleError, read_info, read_params
from jrobot.runtime.policy import BundlePolicy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def act_bundle(tmp_path_factory, shared_dir) -> Path:
    out = tmp_path_factory.mktemp("confine") / "act"
    ckpt = shared_dir / "fixtures" / "parity" / "act_so101_tiny" / "pretrained_model"
    subprocess.run(
        [sys.executable, "-m", "jrobot.export", "--from-lerobot", str(ckpt), "--out", str(out)],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    return out


@pytest.fixture
def bundle(act_bundle, tmp_path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(act_bundle, b)
    return b


def _edit(bundle: Path, **changes) -> None:
    p = bundle / POLICY_JSON
    d = json.loads(p.read_text())
    d.update(changes)
    p.write_text(json.dumps(d))


@pytest.mark.parametrize("name", ["../../outside", "/etc", "tokenizer/../../x"])
def test_a_tokenizer_folder_outside_the_bundle_is_refused(bundle, tmp_path, name):
    (tmp_path / "outside").mkdir()
    _edit(bundle, language={"tokenizer_dir": name, "max_length": 8})
    with pytest.raises(BundleError, match=r"language.tokenizer_dir .* leads outside the bundle folder"):
        BundlePolicy(bundle)


def test_a_symlinked_tokenizer_folder_leading_out_is_refused(bundle, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (bundle / "tokenizer").symlink_to(tmp_path / "elsewhere")
    _edit(bundle, language={"tokenizer_dir": "tokenizer", "max_length": 8})
    with pytest.raises(BundleError, match="leads outside the bundle folder"):
        BundlePolicy(bundle)


@pytest.mark.parametrize("variants", [["../../../tmp/evil"], ["uint8", "uint8/../../x"], "uint8", [3]])
def test_inference_variants_are_known_names_only(bundle, variants):
    _edit(bundle, variants=variants)
    with pytest.raises(BundleError, match=r"malformed policy\.json"):
        read_info(bundle)


def test_files_symlinked_out_of_the_bundle_are_refused(bundle, tmp_path):
    outside = tmp_path / "secret.safetensors"
    shutil.copy(bundle / "params.safetensors", outside)
    (bundle / "params.safetensors").unlink()
    (bundle / "params.safetensors").symlink_to(outside)
    with pytest.raises(BundleError, match=r"the parameters file 'params\.safetensors' leads outside"):
        read_params(bundle)
    out_json = tmp_path / "policy.json"
    shutil.move(bundle / POLICY_JSON, out_json)
    (bundle / POLICY_JSON).symlink_to(out_json)
    with pytest.raises(BundleError, match="leads outside the bundle folder"):
        read_info(bundle)


def test_an_intact_bundle_still_loads(bundle):
    assert sorted(BundlePolicy(bundle).info.variants) == ["float32", "uint8"]

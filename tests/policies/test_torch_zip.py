"""The torch-free .pth reader: tensors come back exactly; anything but a plain state dict is refused."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from jrobot.policies.lerobot.torch_zip import read_torch_zip
from jrobot.policies.resnet import read_weights_file


def test_round_trip_of_a_state_dict(tmp_path, torch_zip_writer):
    rng = np.random.default_rng(0)
    tensors = {
        "conv1.weight": rng.normal(size=(4, 3, 7, 7)).astype(np.float32),
        "bn1.running_var": rng.uniform(size=4).astype(np.float32),
        "bn1.num_batches_tracked": np.array(7, np.int64),
        "half": rng.normal(size=(5,)).astype(np.float16),
        "mask": np.array([True, False, True]),
    }
    # a transposed view (non-contiguous strides) and a tensor at an offset inside a shared storage
    base = np.arange(24, dtype=np.float32)
    extra = {"fc.weight.T": ("shared", 0, (4, 6), (1, 4)), "tail": ("shared", 20, (2, 2), (2, 1))}
    path = tmp_path / "resnet.pth"
    torch_zip_writer(path, tensors, extra, {"shared": base})
    got = read_torch_zip(path)
    assert set(got) == set(tensors) | set(extra)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)
    np.testing.assert_array_equal(got["fc.weight.T"], base.reshape(6, 4).T)
    np.testing.assert_array_equal(got["tail"], base[20:24].reshape(2, 2))
    assert read_weights_file(path).keys() == got.keys()


def test_arbitrary_globals_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR."  # os.system("true")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global os\.system"):
        read_torch_zip(path)


def test_non_zip_files_get_a_clear_error(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="legacy"):
        read_torch_zip(path)


def test_truncated_storage_is_detected(tmp_path, torch_zip_writer):
    path = tmp_path / "bad.pth"
    torch_zip_writer(path, {}, {"w": ("s", 0, (3, 3), (3, 1))}, {"s": np.zeros(4, np.float32)})
    with pytest.raises(pickle.UnpicklingError, match="overruns"):
        read_torch_zip(path)

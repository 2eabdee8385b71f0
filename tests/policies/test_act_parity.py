"""Parity gate: jrobot ACT vs LeRobot 0.4.4 on ../shared/fixtures/parity/act_so101_tiny.

The fixture folder is imported exactly as a user's LeRobot checkpoint would be (`from_lerobot`), and the
raw inputs go through the same conversion a user's data takes: LeRobot's CHW float images are made
channel-last and normalized inside the model; the uint8 convention of the jrobot pipeline is checked
against the float one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jrobot.policies import act
from jrobot.policies.base import flat_arrays, load_policy_module, pure_merge_fn
from jrobot.policies.lerobot.importer import import_lerobot
from jrobot.policies.spec import images_chw_to_hwc

CAMS = ("front", "wrist")
TOL_NORM = 1e-4  # max |Δ| on normalized quantities
TOL_REL = 1e-5  # relative, on the losses


@pytest.fixture(scope="module")
def imported(act_fixture_dir):
    with _no_warnings():
        imported = import_lerobot(act_fixture_dir / "pretrained_model")
    assert load_policy_module(imported.spec.type) is act
    return imported


class _no_warnings:
    """The fixture checkpoint is complete: importing it must not warn."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self._log = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        msgs = [str(w.message) for w in self._log if not issubclass(w.category, DeprecationWarning)]
        assert not msgs, f"import warned: {msgs}"


def _observation(cases, images: str = "float") -> dict[str, np.ndarray]:
    obs = {"observation.state": cases["obs.observation.state"]}
    for cam in CAMS:
        chw = cases[f"obs.observation.images.{cam}"]
        hwc = images_chw_to_hwc(chw)
        if images == "uint8":
            hwc = np.round(hwc * 255.0).astype(np.uint8)
        obs[f"observation.images.{cam}"] = hwc
    return obs


def _train_outputs(model, obs, action, pad, eps):
    """Train-mode forward (normalized targets, mu, log_sigma_x2) and the loss, in one compiled function."""
    target = model.normalizer.normalize("action", jnp.asarray(action))
    pred, mu, log_sigma_x2 = act.forward(model, obs, target, pad, train=True, vae_eps=eps)
    loss, metrics = act.loss(model, {**obs, "action": action, "action_is_pad": pad}, None, vae_eps=eps)
    return target, pred, mu, log_sigma_x2, loss, metrics


@pytest.fixture(scope="module")
def jitted():
    return {
        "chunk_norm": nnx.jit(act.predict_chunk_normalized),
        "sample": nnx.jit(act.sample_actions),
        "train": nnx.jit(_train_outputs),
    }


def test_import_is_exact(imported, act_fixture_dir):
    rep = imported.report
    assert rep.ok and not rep.ignored
    assert len(rep.loaded) == 186
    assert imported.spec.image_keys == ("observation.images.front", "observation.images.wrist")
    assert imported.spec.chunk_size == 10 and imported.spec.action_dim == 6


def test_normalized_inputs(imported, act_cases):
    with jax.default_matmul_precision("highest"):
        state, env, images = act.prepare_observation(imported.model, _observation(act_cases))
    assert env is None
    np.testing.assert_allclose(np.asarray(state), act_cases["norm.observation.state"], atol=1e-5, rtol=0)
    for cam, img in zip(CAMS, images, strict=True):
        ref = images_chw_to_hwc(act_cases[f"norm.observation.images.{cam}"])
        np.testing.assert_allclose(np.asarray(img), ref, atol=1e-5, rtol=0)


def test_eval_chunk_normalized(imported, act_cases, jitted):
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jitted["chunk_norm"](imported.model, _observation(act_cases)))
    ref = act_cases["expected.action_chunk_norm"]
    assert out.shape == ref.shape == (3, 10, 6)
    assert np.abs(out - ref).max() <= TOL_NORM


def test_eval_chunk_dataset_units(imported, act_cases, jitted):
    with jax.default_matmul_precision("highest"):
        out = np.asarray(jitted["sample"](imported.model, _observation(act_cases), None))
    ref = act_cases["expected.action_chunk"]
    scale = np.abs(ref).max()
    assert np.abs(out - ref).max() <= TOL_NORM * scale


def test_train_mode_latent_and_loss(imported, act_cases, jitted):
    obs = _observation(act_cases)
    action, pad, eps = act_cases["train.action"], act_cases["train.action_is_pad"], act_cases["train.vae_eps"]
    with jax.default_matmul_precision("highest"):
        target, pred, mu, log_sigma_x2, loss, metrics = jitted["train"](imported.model, obs, action, pad, eps)
    np.testing.assert_allclose(np.asarray(target), act_cases["norm.action"], atol=1e-5, rtol=0)
    assert np.abs(np.asarray(mu) - act_cases["expected.mu"]).max() <= TOL_NORM
    assert np.abs(np.asarray(log_sigma_x2) - act_cases["expected.log_sigma_x2"]).max() <= TOL_NORM
    assert np.abs(np.asarray(pred) - act_cases["expected.train_actions_hat_norm"]).max() <= TOL_NORM
    for name, ref_key in (
        ("loss", "expected.loss"),
        ("l1_loss", "expected.l1_loss"),
        ("kld_loss", "expected.kld_loss"),
    ):
        ref = float(act_cases[ref_key])
        got = float(loss if name == "loss" else metrics[name])
        assert abs(got - ref) <= TOL_REL * abs(ref), (name, got, ref)


def test_uint8_images_take_the_same_path(imported, act_cases, jitted):
    """uint8 (pipeline format) equals its float /255 form, and stays close to LeRobot's output."""
    obs_u8 = _observation(act_cases, "uint8")
    obs_f = {k: (v.astype(np.float32) / 255.0 if v.dtype == np.uint8 else v) for k, v in obs_u8.items()}
    with jax.default_matmul_precision("highest"):
        out_u8 = np.asarray(jitted["chunk_norm"](imported.model, obs_u8))
        out_f = np.asarray(jitted["chunk_norm"](imported.model, obs_f))
    # Same conversion; XLA may compute x/255 as x*(1/255) (1 ulp on the pixels), hence not bit-exact.
    np.testing.assert_allclose(out_u8, out_f, atol=1e-5, rtol=0)
    # Quantizing the fixture's images moves each pixel by at most 1/510; the chunk moves accordingly but
    # stays within a small fraction of its own spread (a broken conversion, e.g. no /255, is off by O(1)).
    ref = act_cases["expected.action_chunk_norm"]
    assert np.abs(out_u8 - ref).max() <= 0.01 * ref.std()


def test_history_axis_is_accepted(imported, act_cases, jitted):
    """Pipeline batches carry (B, n_obs=1, ...); the result equals the one without the axis."""
    obs = _observation(act_cases)
    with_axis = {k: v[:, None] for k, v in obs.items()}
    with jax.default_matmul_precision("highest"):
        a = np.asarray(jitted["chunk_norm"](imported.model, obs))
        b = np.asarray(jitted["chunk_norm"](imported.model, with_axis))
    np.testing.assert_array_equal(a, b)


def test_channel_first_images_are_refused(imported, act_cases):
    obs = _observation(act_cases)
    obs["observation.images.front"] = act_cases["obs.observation.images.front"]
    with pytest.raises(ValueError, match=r"channel-last.*images_chw_to_hwc"):
        act.sample_actions(imported.model, obs)


def test_exported_inference_matches(imported, act_cases):
    """The pure (state, observation) -> actions function survives jax.export serialization unchanged."""
    from jax import export

    merge = pure_merge_fn(imported.model)
    state = flat_arrays(imported.model)

    def infer(state, obs):
        return act.sample_actions(merge(state), obs)

    obs = _observation(act_cases, "uint8")
    with jax.default_matmul_precision("highest"):
        exp = export.export(jax.jit(infer), platforms=["cpu"])(state, obs)
        restored = export.deserialize(exp.serialize())
        got = np.asarray(restored.call(state, obs))
        ref = np.asarray(jax.jit(infer)(state, obs))
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    assert np.abs(got - act_cases["expected.action_chunk"]).max() <= 0.01 * np.abs(got).max()  # uint8 inputs
    assert got.shape == (3, 10, 6)


def test_exported_bundle_matches_lerobot(act_fixture_dir, act_cases, tmp_path):
    """The bundle `jrobot.export --from-lerobot` writes (ResNet layer1 and layer2, whose maps are 24x32 and
    12x16 at the fixture's 96x128, laid out for Winograd convolutions) against LeRobot's actions."""
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.train.export import export_lerobot

    export_lerobot(str(act_fixture_dir / "pretrained_model"), tmp_path / "bundle")
    policy = BundlePolicy(tmp_path / "bundle")
    tiles = sorted(k for k in policy.params if k.endswith("/kernel_tiles"))
    assert len(tiles) == 7 and all("/layer1/" in k or "/layer2/" in k for k in tiles), tiles
    got = policy.predict(_observation(act_cases))
    ref = act_cases["expected.action_chunk"]
    assert got.shape == ref.shape == (3, 10, 6)
    assert np.abs(got - ref).max() <= TOL_NORM * np.abs(ref).max()

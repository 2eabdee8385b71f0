"""Parity gate: jrobot Diffusion Policy vs LeRobot 0.4.4 on both reference folders.

../shared/fixtures/parity/diffusion_so101_tiny_{ddpm,ddim}: a random-weight LeRobot checkpoint (state 6,
action 6, two 64x64 cameras sharing one GroupNorm ResNet18, crop 56, horizon 8, n_obs_steps 2,
n_action_steps 4, 20 train timesteps; DDIM with 5 inference steps) and `cases.npz` with LeRobot's
outputs. The folder is imported as a user's checkpoint would be (`from_lerobot`), and LeRobot's raw
inputs (CHW float images in [0, 1], dataset-unit state) go through jrobot's own normalization.
Tolerance: max |Δ| <= 1e-4 in normalized units.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from jrobot.policies import diffusion
from jrobot.policies.base import load_policy_module
from jrobot.policies.diffusion.unet import ConditionalUnet1d
from jrobot.policies.lerobot.statedict import load_state_dict, state_dict
from jrobot.policies.spec import images_chw_to_hwc

CAMS = ("front", "wrist")
TOL_NORM = 1e-4
FIXTURES = {"ddpm": "diffusion_so101_tiny_ddpm", "ddim": "diffusion_so101_tiny_ddim"}


@functools.cache
def _load(shared_dir: Path, name: str):
    d = shared_dir / "fixtures" / "parity" / FIXTURES[name]
    if not (d / "pretrained_model" / "config.json").is_file():
        pytest.fail(f"Diffusion parity fixture missing at {d}")
    with np.load(d / "cases.npz") as z:
        cases = {k: z[k] for k in z.files}
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        imported = load_policy_module("diffusion").from_lerobot(d / "pretrained_model")
    msgs = [str(w.message) for w in log if not issubclass(w.category, DeprecationWarning)]
    assert not msgs, f"importing a complete 0.4.4 checkpoint warned: {msgs}"
    return name, d, cases, imported


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def case(request, shared_dir: Path):
    """(scheduler name, fixture dir, cases, imported policy) for each reference folder."""
    return _load(shared_dir, request.param)


@pytest.fixture(scope="module", autouse=True)
def _highest_precision():
    """float32 matmuls/convs at full precision (GPUs default to TF32-like passes: ~3e-4 off here)."""
    with jax.default_matmul_precision("highest"):
        yield


def _observation(cases, images: str = "float") -> dict[str, np.ndarray]:
    obs = {"observation.state": cases["obs.observation.state"]}
    for cam in CAMS:
        hwc = images_chw_to_hwc(cases[f"obs.observation.images.{cam}"])
        if images == "uint8":
            hwc = np.round(hwc * 255.0).astype(np.uint8)
        obs[f"observation.images.{cam}"] = hwc
    return obs


def _maxdiff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def test_import_reads_the_checkpoint_config(case):
    name, _, _, imp = case
    cfg, spec = imp.model.config, imp.spec
    assert imp.report.ok and not imp.report.unexpected and not imp.report.missing
    assert cfg.noise_scheduler_type == name.upper()
    assert cfg.num_inference_steps == (5 if name == "ddim" else None)
    # non-default values that must come from config.json, not from jrobot's defaults
    assert (cfg.horizon, cfg.n_action_steps, cfg.down_dims, cfg.kernel_size) == (8, 4, (32, 64), 3)
    assert (cfg.crop_shape, cfg.spatial_softmax_num_keypoints, cfg.num_train_timesteps) == ((56, 56), 4, 20)
    assert cfg.use_ema is False  # LeRobot trained it without an EMA
    assert spec.image_keys == ("observation.images.front", "observation.images.wrist")
    assert spec.chunk_size == spec.n_action_steps == 4
    assert spec.action_delta_indices == tuple(range(-1, 7))
    assert spec.observation_delta_indices == (-1, 0)


def test_state_dict_round_trip_is_exact(case):
    """Writing the imported model back gives LeRobot's model.safetensors, key for key and bit for bit."""
    from safetensors.numpy import load_file

    _, d, _, imp = case
    ref = load_file(str(d / "pretrained_model" / "model.safetensors"))
    out = state_dict(imp.model)
    assert set(out) == set(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(out[k], v, err_msg=k)


def test_scheduler_tables(case):
    name, _, cases, imp = case
    sched = imp.model.scheduler
    np.testing.assert_array_equal(sched.betas, cases["scheduler.betas"])
    np.testing.assert_array_equal(sched.alphas_cumprod, cases["scheduler.alphas_cumprod"])
    np.testing.assert_array_equal(sched.timesteps, cases["sample.timesteps"])
    assert sched.kind == name.upper()


@pytest.mark.parametrize("images", ["float", "uint8"])
def test_normalized_inputs(case, images):
    _, _, cases, imp = case
    state, ims, env = diffusion.prepare_observation(imp.model, _observation(cases, images))
    assert env is None
    assert _maxdiff(state, cases["norm.observation.state"]) <= TOL_NORM
    # uint8 rounding moves a pixel by at most 0.5/255 before normalization (std >= 0.224)
    tol = TOL_NORM if images == "float" else 0.5 / 255 / 0.224 + 1e-5
    for cam, im in zip(CAMS, ims, strict=True):
        assert _maxdiff(im, images_chw_to_hwc(cases[f"norm.observation.images.{cam}"])) <= tol


@pytest.fixture(scope="module")
def outputs(case):
    """Every model quantity the cases check, from one jitted program per fixture (one compile)."""
    name, _, cases, imp = case
    obs = _observation(cases)
    step_noise = cases["sample.step_noise"] if name == "ddpm" else None
    batch = dict(obs, action=cases["train.action"], action_is_pad=cases["train.action_is_pad"])

    @nnx.jit
    def run(model, obs, batch, noise, step_noise, eps, timesteps, unet_x, unet_t, unet_c):
        loss, metrics = diffusion.compute_loss(model, batch, eps=eps, timesteps=timesteps, train=False)
        return {
            "global_cond": diffusion.global_conditioning(model, obs),
            "unet_out": model.diffusion.unet(unet_x, unet_t, unet_c),
            "traj": diffusion.generate_trajectory(model, obs, noise=noise, step_noise=step_noise),
            "actions": diffusion.sample_actions(model, obs, noise=noise, step_noise=step_noise),
            # the runtime's offline mode passes the initial noise as observation key `noise`
            "actions_noise_key": diffusion.sample_actions(
                model, dict(obs, noise=noise), step_noise=step_noise
            ),
            "loss": loss,
            "metrics_loss": metrics["loss"],
            "norm_action": model.normalizer.normalize("action", batch["action"]),
        }

    out = run(
        imp.model,
        obs,
        batch,
        cases["sample.noise"],
        step_noise,
        cases["train.eps"],
        cases["train.timesteps"],
        cases["unet.x"],
        cases["unet.t"],
        cases["expected.global_cond"],
    )
    return {k: np.asarray(v) for k, v in out.items()}


def test_global_conditioning(case, outputs):
    _, _, cases, _ = case
    assert outputs["global_cond"].shape == cases["expected.global_cond"].shape == (3, 44)
    assert _maxdiff(outputs["global_cond"], cases["expected.global_cond"]) <= TOL_NORM


def test_unet_call(case, outputs):
    _, _, cases, _ = case
    assert _maxdiff(outputs["unet_out"], cases["expected.unet_out"]) <= TOL_NORM


def test_unet_alone_loads_from_the_unet_keys(case):
    """The U-Net is usable on its own: a strict load of only `diffusion.unet.*` reproduces the call."""
    _, d, cases, _ = case
    from safetensors.numpy import load_file

    sd = {
        k: v for k, v in load_file(str(d / "pretrained_model" / "model.safetensors")).items() if ".unet." in k
    }
    unet = nnx.eval_shape(
        lambda: ConditionalUnet1d(
            6, 44, down_dims=(32, 64), kernel_size=3, diffusion_step_embed_dim=16, rngs=nnx.Rngs(0)
        )
    )
    load_state_dict(unet, sd, prefix="diffusion.unet.")
    out = nnx.jit(lambda u, x, t, c: u(x, t, c))(
        unet, cases["unet.x"], cases["unet.t"], cases["expected.global_cond"]
    )
    assert _maxdiff(out, cases["expected.unet_out"]) <= TOL_NORM


def _action_error(imp, actions, expected) -> float:
    """Dataset-unit error expressed in normalized units (divided by each dim's MIN_MAX half-range)."""
    stats = imp.stats["action"]
    half_range = (stats["max"] - stats["min"]) / 2
    return float((np.abs(np.asarray(actions, np.float64) - expected) / half_range).max())


def test_full_sampler_and_executed_slice(case, outputs):
    _, _, cases, imp = case
    assert _maxdiff(outputs["traj"], cases["expected.sample_norm"]) <= TOL_NORM
    executed = diffusion.executed_slice(imp.model.config, outputs["traj"])
    assert _maxdiff(executed, cases["expected.actions_norm"]) <= TOL_NORM
    assert outputs["actions"].shape == cases["expected.actions"].shape == (3, 4, 6)
    assert _action_error(imp, outputs["actions"], cases["expected.actions"]) <= TOL_NORM


def test_offline_noise_key_matches_the_keyword(case, outputs):
    _, _, cases, imp = case
    np.testing.assert_array_equal(outputs["actions_noise_key"], outputs["actions"])
    assert _action_error(imp, outputs["actions_noise_key"], cases["expected.actions"]) <= TOL_NORM


def test_loss_with_stored_noise_and_timesteps(case, outputs):
    _, _, cases, _ = case
    assert abs(float(outputs["loss"]) - float(cases["expected.loss"])) <= TOL_NORM
    assert float(outputs["metrics_loss"]) == float(outputs["loss"])
    # the normalized targets the loss used are LeRobot's
    assert _maxdiff(outputs["norm_action"], cases["norm.action"]) <= TOL_NORM


def test_separate_encoders_with_copied_weights_match_the_shared_one(shared_dir):
    """`use_separate_rgb_encoder_per_camera`: per-camera encoders holding the shared weights must give the
    same conditioning (checks the camera-major reshapes and LeRobot's `rgb_encoder.{i}` key layout).
    The encoder is the same in both fixtures, so one is enough."""
    import dataclasses

    _, d, cases, imp = _load(shared_dir, "ddim")
    from safetensors.numpy import load_file

    sd = load_file(str(d / "pretrained_model" / "model.safetensors"))
    sep = {}
    for k, v in sd.items():
        if k.startswith("diffusion.rgb_encoder."):
            rest = k[len("diffusion.rgb_encoder.") :]
            for i in range(len(CAMS)):
                sep[f"diffusion.rgb_encoder.{i}.{rest}"] = v
        else:
            sep[k] = v
    cfg = dataclasses.replace(imp.model.config, use_separate_rgb_encoder_per_camera=True)
    spec = diffusion.make_spec(cfg, imp.spec.input_features, imp.spec.output_features)
    model = nnx.eval_shape(lambda: diffusion.DiffusionPolicy(cfg, spec, imp.stats, rngs=nnx.Rngs(0)))
    load_state_dict(model, sep)
    model.normalizer.set_stats(imp.stats, {**spec.input_features, **spec.output_features})
    gc = nnx.jit(diffusion.global_conditioning)(model, _observation(cases))
    assert _maxdiff(gc, cases["expected.global_cond"]) <= TOL_NORM

"""SmolVLA beyond the parity gate: numerics helpers, strict import, config knobs, full-size layout,
mixed precision, training mechanics and the pretrained-VLM load (reference: lerobot_policies.md §4, §7).

Parity against LeRobot's own outputs lives in test_smolvla_parity.py; nothing here repeats it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from jrobot.policies import smolvla as sv
from jrobot.policies.layers import Buffer
from jrobot.policies.lerobot.statedict import StateDictError, collect_leaves, load_state_dict, state_dict
from jrobot.policies.smolvla import model as M
from jrobot.policies.smolvla.config import SMOLVLM2_500M, SmolVLAConfig, VLMArch
from jrobot.policies.smolvla.model import SmolVLAPolicy
from jrobot.policies.spec import FeatureType, PolicyFeature, images_chw_to_hwc
from tests.conftest import PARITY_FIXTURES

FIXTURE = PARITY_FIXTURES / "smolvla_so101_tiny"
HUB_ID = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
CAMERAS = ("observation.images.front", "observation.images.wrist")


# ----------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    if not (FIXTURE / "cases.npz").is_file():
        pytest.fail(f"SmolVLA fixture missing at {FIXTURE}")
    with np.load(FIXTURE / "cases.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def imported():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the lm_head note; import notes are tested below
        return sv.from_lerobot(FIXTURE / "pretrained_model")


def observation(cases: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    obs = {
        k[len("obs.") :]: images_chw_to_hwc(v) if ".images." in k else v
        for k, v in cases.items()
        if k.startswith("obs.") and k != "obs.task"
    }
    obs[sv.LANGUAGE_TOKENS] = cases["norm.observation.language.tokens"]
    obs[sv.LANGUAGE_MASK] = cases["norm.observation.language.attention_mask"]
    return obs


def copy_flat(src: Path, dst: Path) -> Path:
    """Copy a flat folder file by file (the fixture is read-only; copytree would keep that)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copyfile(f, dst / f.name)
    return dst


def checkpoint_copy(tmp_path: Path, *, with_vlm: bool = True) -> Path:
    """tmp/run/pretrained_model (+ tmp/run/vlm, found relative to the checkpoint's parent)."""
    ckpt = copy_flat(FIXTURE / "pretrained_model", tmp_path / "run" / "pretrained_model")
    if with_vlm:
        copy_flat(FIXTURE / "vlm", tmp_path / "run" / "vlm")
    return ckpt


def edit_weights(ckpt: Path, fn) -> None:
    path = ckpt / "model.safetensors"
    sd = load_file(str(path))
    fn(sd)
    save_file(sd, str(path))


def edit_config(ckpt: Path, **changes) -> None:
    path = ckpt / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def import_quietly(path: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sv.from_lerobot(path, **kw)


def fixture_features() -> dict[str, PolicyFeature]:
    feats = {k: PolicyFeature(FeatureType.VISUAL, (3, 48, 64)) for k in CAMERAS}
    feats["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    feats["action"] = PolicyFeature(FeatureType.ACTION, (6,))
    return feats


def fixture_config(**changes) -> SmolVLAConfig:
    cfg, _ = SmolVLAConfig.from_lerobot(
        json.loads((FIXTURE / "pretrained_model" / "config.json").read_text())
    )
    return dataclasses.replace(cfg, **changes)


def with_config(model: SmolVLAPolicy, **changes) -> SmolVLAPolicy:
    """A copy of `model` whose (policy and flow-matching) config has `changes`."""
    out = nnx.clone(model)
    out.config = dataclasses.replace(model.config, **changes)
    out.model.config = out.config
    return out


def leaf_paths(state) -> list[str]:
    return [".".join(map(str, p)) for p, _ in nnx.to_flat_state(state)]


# ----------------------------------------------------------------------------------------------------
# 1. time embedding: LeRobot's create_sinusoidal_pos_embedding computes the angle in float64


def lerobot_time_embedding(t: np.ndarray, dim: int, min_period: float, max_period: float) -> np.ndarray:
    fraction = np.linspace(0.0, 1.0, dim // 2, dtype=np.float64)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.astype(np.float64)[:, None] * (2 * np.pi / period[None, :])
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)


EULER_TIMES = [1.0 + k * -0.1 for k in range(10)] + [1.0 + k * (-1 / 3) for k in range(3)]


@pytest.mark.parametrize(
    ("dim", "min_period", "max_period"),
    [(720, 4e-3, 4.0), (48, 4e-3, 4.0), (720, 1e-3, 10.0), (64, 1e-2, 1.0), (96, 4e-4, 100.0)],
)
def test_time_embedding_is_float64_accurate(dim, min_period, max_period):
    """float32 inputs, float64-accurate [sin, cos] (< 1e-6) where a float32 angle is off by > 1e-5."""
    t = np.concatenate([np.linspace(0.001, 1.0, 1500), np.asarray(EULER_TIMES)]).astype(np.float32)
    assert t.max() == 1.0 and t.min() == np.float32(0.001)
    ref = lerobot_time_embedding(t, dim, min_period, max_period)
    got = np.asarray(M.time_embedding(jnp.asarray(t), dim, min_period, max_period))
    assert got.shape == (t.size, dim) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-6

    period32 = (min_period * (max_period / min_period) ** np.linspace(0, 1, dim // 2)).astype(np.float32)
    angle32 = jnp.asarray(t)[:, None] * (jnp.float32(2 * np.pi) / jnp.asarray(period32))
    naive = np.asarray(jnp.concatenate([jnp.sin(angle32), jnp.cos(angle32)], axis=1))
    assert np.abs(naive - ref).max() > 1e-5


def test_time_embedding_needs_an_even_dim():
    """An odd width cannot hold the [sin, cos] halves."""
    with pytest.raises(ValueError, match="even"):
        M.time_embedding(jnp.ones(2), 7, 4e-3, 4.0)


# ----------------------------------------------------------------------------------------------------
# 2. vision position ids (§4.8: transformers' dtype-dependent bucketize)


@pytest.mark.parametrize("n", [32, 4])
def test_vision_position_ids_follow_the_pixel_dtype(n):
    """float32: rows/cols [0, 0, 1, ..., n-2] (max id 990 for n=32); bfloat16: 0..n-1 (max 1023)."""
    f32_axis = np.asarray([0, *range(n - 1)])
    bf16_axis = np.arange(n)
    for dtype, axis in ((jnp.float32, f32_axis), (jnp.bfloat16, bf16_axis)):
        ids = M.vision_position_ids(n, dtype)
        expected = (axis[:, None] * n + axis[None, :]).reshape(-1)
        assert ids.shape == (n * n,)
        np.testing.assert_array_equal(ids, expected)
    if n == 32:
        assert M.vision_position_ids(32, jnp.float32).max() == 990
        assert M.vision_position_ids(32, jnp.bfloat16).max() == 1023


# ----------------------------------------------------------------------------------------------------
# 3. resize_with_pad (§4.3): torch bilinear, align_corners=False, no antialias; pad top and left


def torch_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(mode="bilinear", align_corners=False) on (B, H, W, C), float64."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = axis(img.shape[1], out_h)
    x0, x1, wx = axis(img.shape[2], out_w)
    x = img.astype(np.float64)
    rows = x[:, y0] * (1 - wy)[None, :, None, None] + x[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


def test_resize_with_pad_landscape_pads_the_top():
    """48x64 into (64, 64): no resize, the content kept as is under 16 zero rows."""
    img = np.random.default_rng(0).uniform(0.1, 1.0, (2, 48, 64, 3)).astype(np.float32)
    out = np.asarray(M.resize_with_pad(jnp.asarray(img), 64, 64))
    assert out.shape == (2, 64, 64, 3)
    assert np.all(out[:, :16] == 0)
    np.testing.assert_array_equal(out[:, 16:], img)


def test_resize_with_pad_portrait_pads_the_left():
    """64x40 into 32x32: halved to 32x20 (torch bilinear), 12 zero columns on the left."""
    img = np.random.default_rng(1).uniform(0.1, 1.0, (1, 64, 40, 3)).astype(np.float32)
    out = np.asarray(M.resize_with_pad(jnp.asarray(img), 32, 32))
    assert out.shape == (1, 32, 32, 3)
    assert np.all(out[:, :, :12] == 0)
    assert np.all(out[:, :, 12:] > 0)
    np.testing.assert_allclose(out[:, :, 12:], torch_bilinear(img, 32, 20), atol=1e-6)


def test_resize_with_pad_upscale_matches_torch_bilinear():
    """24x24 to 32x32 equals F.interpolate(bilinear, align_corners=False) (edge clamp included)."""
    img = np.random.default_rng(2).uniform(0.0, 1.0, (2, 24, 24, 3)).astype(np.float32)
    out = np.asarray(M.resize_with_pad(jnp.asarray(img), 32, 32))
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out, torch_bilinear(img, 32, 32), atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# 4. attention kernel (§4.4: eager_attention_forward)


def test_gqa_attention_head_mapping_and_masked_rows():
    """Query head h reads kv head h // (H / KV); fully masked query rows stay finite (uniform)."""
    rng = np.random.default_rng(3)
    b, length, s, h, kv, d = 2, 5, 7, 6, 2, 8
    q = rng.standard_normal((b, length, h, d)).astype(np.float32)
    k = rng.standard_normal((b, s, kv, d)).astype(np.float32)
    v = rng.standard_normal((b, s, kv, d)).astype(np.float32)
    mask = rng.uniform(size=(b, length, s)) > 0.4
    mask[0, 1] = False  # fully masked query rows (padded tokens)
    mask[1, 4] = False
    out = np.asarray(M.gqa_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask)))
    assert out.shape == (b, length, h * d)
    assert np.isfinite(out).all()

    ref = np.zeros((b, length, h, d))
    lowest = np.finfo(np.float32).min
    for bi in range(b):
        for hi in range(h):
            g = hi // (h // kv)
            for li in range(length):
                w = (k[bi, :, g].astype(np.float64) @ q[bi, li, hi]) * d**-0.5
                w = np.where(mask[bi, li], w, lowest)
                p = np.exp(w - w.max())
                ref[bi, li, hi] = (p / p.sum()) @ v[bi, :, g]
    np.testing.assert_allclose(out.reshape(b, length, h, d), ref, atol=1e-5)
    np.testing.assert_allclose(out[0, 1].reshape(h, d), v[0].mean(0)[[i // 3 for i in range(h)]], atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# 5. import strictness through from_lerobot


def test_import_missing_tensor_is_named(tmp_path, monkeypatch):
    """A tensor absent from model.safetensors fails the import, naming the key."""
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint_copy(tmp_path)
    key = "model.vlm_with_expert.lm_expert.layers.1.self_attn.k_proj.weight"
    edit_weights(ckpt, lambda sd: sd.pop(key))
    with pytest.raises(StateDictError, match=re.escape(key)) as e:
        import_quietly(ckpt)
    assert e.value.report.missing == [key]


def test_import_unexpected_tensor_is_named(tmp_path, monkeypatch):
    """A tensor the model has no place for fails the import, naming the key."""
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint_copy(tmp_path)
    key = "model.vlm_with_expert.lm_expert.layers.7.mlp.up_proj.weight"
    edit_weights(ckpt, lambda sd: sd.update({key: np.zeros((4, 4), np.float32)}))
    with pytest.raises(StateDictError, match=re.escape(key)) as e:
        import_quietly(ckpt)
    assert e.value.report.unexpected == [key]


def test_import_wrong_shape_is_named(tmp_path, monkeypatch):
    """A tensor of the wrong shape fails the import, naming the key and both shapes."""
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint_copy(tmp_path)
    key = "model.state_proj.weight"

    def widen(sd):
        sd[key] = np.zeros((64, 16), np.float32)

    edit_weights(ckpt, widen)
    with pytest.raises(StateDictError, match=re.escape(key)) as e:
        import_quietly(ckpt)
    assert e.value.report.mismatched == [(key, (64, 32), (64, 16))]


def test_import_finds_the_vlm_folder_relative_or_explicit(tmp_path, monkeypatch, imported):
    """vlm_model_name "vlm" resolves next to the checkpoint; without that folder only `vlm=` finds it."""
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint_copy(tmp_path)
    found = import_quietly(ckpt)
    assert Path(found.model.config.vlm_path) == (tmp_path / "run" / "vlm").absolute()
    inside = checkpoint_copy(tmp_path / "inside", with_vlm=False)
    copy_flat(FIXTURE / "vlm", inside / "vlm")
    assert Path(import_quietly(inside).model.config.vlm_path) == (inside / "vlm").absolute()

    alone = checkpoint_copy(tmp_path / "alone", with_vlm=False)
    with pytest.raises(FileNotFoundError, match="'vlm'"):
        import_quietly(alone)
    elsewhere = copy_flat(FIXTURE / "vlm", tmp_path / "elsewhere" / "my_vlm")
    got = import_quietly(alone, vlm=elsewhere)
    assert Path(got.model.config.vlm_path) == elsewhere.absolute()
    assert got.model.config.vlm == imported.model.config.vlm
    assert got.model.tokenizer is not None
    np.testing.assert_array_equal(
        np.asarray(got.model.model.state_proj.kernel[...]),
        np.asarray(imported.model.model.state_proj.kernel[...]),
    )


def test_import_offline_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    """A hub id that is neither a folder nor cached, offline: FileNotFoundError naming it, no network."""
    import huggingface_hub.constants as hf_constants

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    ckpt = checkpoint_copy(tmp_path, with_vlm=False)
    edit_config(ckpt, vlm_model_name=HUB_ID)
    with pytest.raises(FileNotFoundError, match=re.escape(repr(HUB_ID)) + ".*HF_HUB_OFFLINE"):
        import_quietly(ckpt)


def test_inputs_are_checked(imported, cases):
    """A missing camera or language key is a KeyError naming it; a wrong noise shape a ValueError."""
    model = imported.model
    obs = observation(cases)
    noise = cases["sample.noise"]
    no_cam = {k: v for k, v in obs.items() if k != "observation.images.wrist"}
    with pytest.raises(KeyError, match=re.escape("observation.images.wrist")):
        sv.predict_chunk_normalized(model, no_cam, noise=noise)
    for key in (sv.LANGUAGE_TOKENS, sv.LANGUAGE_MASK):
        with pytest.raises(KeyError, match=re.escape(key)):
            sv.predict_chunk_normalized(model, {k: v for k, v in obs.items() if k != key}, noise=noise)
    with pytest.raises(ValueError, match="noise"):
        sv.predict_chunk_normalized(model, obs, noise=noise[..., :6])
    with pytest.raises(ValueError, match="noise"):
        sv.loss(
            model,
            {**obs, "action": cases["train.action"]},
            None,
            noise=noise[:, :4],
            time=cases["train.time"],
        )


# ----------------------------------------------------------------------------------------------------
# 6. config knobs


def full_size(**changes) -> SmolVLAConfig:
    return SmolVLAConfig(vlm=SMOLVLM2_500M.to_dict(), **changes)


def test_config_rejects_inconsistent_architectures():
    """LeRobot's own assertions, and a vision grid that cannot hold the resized images, fail early."""
    full_size()  # the defaults are consistent
    with pytest.raises(ValueError, match=r"resize_imgs_with_padding \(256, 256\).*\(512, 512\)"):
        full_size(resize_imgs_with_padding=(256, 256))
    with pytest.raises(ValueError, match=r"num_vlm_layers \(33\) exceeds the text model's 32 layers"):
        full_size(num_vlm_layers=33)
    with pytest.raises(
        ValueError, match=r"num_vlm_layers \(16\) must be a multiple of num_expert_layers \(3\)"
    ):
        full_size(num_expert_layers=3)
    with pytest.raises(
        ValueError,
        match="VLM layer 2 is a self-attention layer but runs expert layer 1, built for cross-attention",
    ):
        full_size(num_vlm_layers=4, num_expert_layers=2, self_attn_every_n_layers=2)
    ok = full_size(num_vlm_layers=4, num_expert_layers=2, self_attn_every_n_layers=0)
    assert ok.layer_plan() == [(0, "cross"), (None, "cross"), (1, "cross"), (None, "cross")]


def test_config_rejects_unsupported_options():
    """Delta joint actions (LeRobot raises too) and observation history are refused."""
    with pytest.raises(ValueError, match="use_delta_joint_actions_aloha"):
        SmolVLAConfig(use_delta_joint_actions_aloha=True)
    with pytest.raises(ValueError, match="n_obs_steps must be 1"):
        SmolVLAConfig(n_obs_steps=2)


def test_config_tiny_vlm_needs_its_image_size():
    """The fixture's 64-px vision tower refuses the default 512x512 resize."""
    arch = VLMArch.from_hf_config(json.loads((FIXTURE / "vlm" / "config.json").read_text()))
    assert arch.vision.image_size == 64 and arch.text.num_hidden_layers == 4
    SmolVLAConfig(vlm=arch.to_dict(), resize_imgs_with_padding=(64, 64), num_vlm_layers=2)
    with pytest.raises(ValueError, match="resize_imgs_with_padding"):
        SmolVLAConfig(vlm=arch.to_dict(), num_vlm_layers=2)


def test_shipped_tiny_vlm_is_what_write_tiny_vlm_writes(tmp_path):
    """The CPU demo's VLM folder in the package is regenerated by its writer, file for file."""
    from jrobot.policies.smolvla.tiny_vlm import SHIPPED, write_tiny_vlm

    out = write_tiny_vlm(tmp_path / "vlm")
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted(p.name for p in out.iterdir())
    for f in out.iterdir():
        assert json.loads(f.read_text()) == json.loads((SHIPPED / f.name).read_text()), f.name


def test_import_notes_an_unknown_config_key(tmp_path, monkeypatch):
    """An unknown config.json key is reported (a warning and a note naming it), not fatal."""
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint_copy(tmp_path)
    edit_config(ckpt, bogus_knob=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = sv.from_lerobot(ckpt)
    assert any("'bogus_knob'" in str(w.message) for w in caught)
    assert any("bogus_knob" in n for n in got.notes)
    _, notes = SmolVLAConfig.from_lerobot({"num_steps": 5, "another_unknown": 1})
    assert len(notes) == 1 and "'another_unknown'" in notes[0]


# ----------------------------------------------------------------------------------------------------
# 7. full size: LeRobot's lerobot/smolvla_base layout (§4.7), written out here independently

LM_HEAD = ("model.vlm_with_expert.vlm.lm_head.weight", (49280, 960))


def lerobot_full_size_shapes() -> dict[str, tuple[int, ...]]:
    """§4.7's listing expanded by hand, minus lm_head (SmolVLA never uses it; jrobot leaves it out)."""
    out: dict[str, tuple[int, ...]] = {}
    vis = "model.vlm_with_expert.vlm.model.vision_model."
    out[vis + "embeddings.patch_embedding.weight"] = (768, 3, 16, 16)
    out[vis + "embeddings.patch_embedding.bias"] = (768,)
    out[vis + "embeddings.position_embedding.weight"] = (1024, 768)
    for i in range(12):
        p = f"{vis}encoder.layers.{i}."
        for proj in ("q", "k", "v", "out"):
            out[f"{p}self_attn.{proj}_proj.weight"] = (768, 768)
            out[f"{p}self_attn.{proj}_proj.bias"] = (768,)
        for n in (1, 2):
            out[f"{p}layer_norm{n}.weight"] = (768,)
            out[f"{p}layer_norm{n}.bias"] = (768,)
        out[p + "mlp.fc1.weight"] = (3072, 768)
        out[p + "mlp.fc1.bias"] = (3072,)
        out[p + "mlp.fc2.weight"] = (768, 3072)
        out[p + "mlp.fc2.bias"] = (768,)
    out[vis + "post_layernorm.weight"] = (768,)
    out[vis + "post_layernorm.bias"] = (768,)
    out["model.vlm_with_expert.vlm.model.connector.modality_projection.proj.weight"] = (960, 12288)
    txt = "model.vlm_with_expert.vlm.model.text_model."
    out[txt + "embed_tokens.weight"] = (49280, 960)
    for i in range(16):
        p = f"{txt}layers.{i}."
        out[p + "self_attn.q_proj.weight"] = (960, 960)
        out[p + "self_attn.k_proj.weight"] = (320, 960)
        out[p + "self_attn.v_proj.weight"] = (320, 960)
        out[p + "self_attn.o_proj.weight"] = (960, 960)
        out[p + "mlp.gate_proj.weight"] = (2560, 960)
        out[p + "mlp.up_proj.weight"] = (2560, 960)
        out[p + "mlp.down_proj.weight"] = (960, 2560)
        out[p + "input_layernorm.weight"] = (960,)
        out[p + "post_attention_layernorm.weight"] = (960,)
    out[txt + "norm.weight"] = (960,)
    exp = "model.vlm_with_expert.lm_expert."
    for i in range(16):
        p = f"{exp}layers.{i}."
        kv_in = 720 if i in (0, 2, 4, 6, 8, 10, 12, 14) else 320  # odd layers: cross-attention
        out[p + "self_attn.q_proj.weight"] = (960, 720)
        out[p + "self_attn.k_proj.weight"] = (320, kv_in)
        out[p + "self_attn.v_proj.weight"] = (320, kv_in)
        out[p + "self_attn.o_proj.weight"] = (720, 960)
        out[p + "mlp.gate_proj.weight"] = (2048, 720)
        out[p + "mlp.up_proj.weight"] = (2048, 720)
        out[p + "mlp.down_proj.weight"] = (720, 2048)
        out[p + "input_layernorm.weight"] = (720,)
        out[p + "post_attention_layernorm.weight"] = (720,)
    out[exp + "norm.weight"] = (720,)
    for name, (o, i) in {
        "state_proj": (960, 32),
        "action_in_proj": (720, 32),
        "action_out_proj": (32, 720),
        "action_time_mlp_in": (720, 1440),
        "action_time_mlp_out": (720, 720),
    }.items():
        out[f"model.{name}.weight"] = (o, i)
        out[f"model.{name}.bias"] = (o,)
    return out


def smolvla_base_config() -> SmolVLAConfig:
    return full_size(num_expert_layers=0, pad_language_to="max_length")


def smolvla_base_spec(config: SmolVLAConfig):
    inputs = {
        f"observation.images.camera{i}": PolicyFeature(FeatureType.VISUAL, (3, 256, 256)) for i in (1, 2, 3)
    }
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    return sv.make_spec(config, inputs, {"action": PolicyFeature(FeatureType.ACTION, (6,))})


BASE_STATS = {
    "observation.state": {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)},
    "action": {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)},
}


def test_full_size_layout_matches_lerobot():
    """smolvla_base's configuration gives exactly LeRobot's keys and shapes, 450.0M with lm_head."""
    config = smolvla_base_config()
    spec = smolvla_base_spec(config)
    model = nnx.eval_shape(lambda: SmolVLAPolicy(config, spec, BASE_STATS, rngs=nnx.Rngs(0)))
    got = {k: leaf.shape for k, leaf in collect_leaves(model).items()}
    expected = lerobot_full_size_shapes()
    assert len(expected) == 3 + 12 * 16 + 2 + 1 + 1 + 16 * 9 + 1 + 16 * 9 + 1 + 10
    assert set(got) == set(expected)
    assert got == expected
    total = sum(int(np.prod(s)) for s in expected.values()) + int(np.prod(LM_HEAD[1]))
    assert total == sum(int(np.prod(s)) for s in got.values()) + 49280 * 960
    assert total == 450_046_176
    assert f"{total / 1e6:.1f}M" == "450.0M"
    assert len(spec.image_keys) == 3 and spec.input_features[sv.LANGUAGE_TOKENS].shape == (48,)


@pytest.mark.slow
def test_full_size_model_loads_and_samples():
    """A real 450M model takes a LeRobot-keyed state dict (lm_head ignored) and samples a finite chunk."""
    config = smolvla_base_config()
    spec = smolvla_base_spec(config)
    model = SmolVLAPolicy(config, spec, BASE_STATS, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    sd = {}
    for k, shape in {**lerobot_full_size_shapes(), LM_HEAD[0]: LM_HEAD[1]}.items():
        v = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        sd[k] = (
            v + np.float32(1.0) if k.endswith("norm.weight") or "layernorm" in k or "layer_norm" in k else v
        )
    report = load_state_dict(model, sd, ignore=[r"lm_head"])
    assert report.ignored == [LM_HEAD[0]] and report.ok and len(report.loaded) == len(sd) - 1
    key = "model.vlm_with_expert.lm_expert.layers.3.self_attn.k_proj.weight"
    np.testing.assert_array_equal(collect_leaves(model)[key].get(), sd[key])
    del sd

    obs = {
        f"observation.images.camera{i}": rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
        for i in (1, 2, 3)
    }
    obs["observation.state"] = rng.standard_normal((1, 6)).astype(np.float32)
    obs[sv.LANGUAGE_TOKENS] = rng.integers(0, 49280, (1, 48)).astype(np.int32)
    obs[sv.LANGUAGE_MASK] = np.ones((1, 48), bool)
    noise = rng.standard_normal((1, 50, 32)).astype(np.float32)
    chunk = nnx.jit(lambda m, o, n: sv.sample_actions(m, o, noise=n))(model, obs, noise)
    chunk = np.asarray(chunk)
    assert chunk.shape == (1, 50, 6)
    assert np.isfinite(chunk).all()
    assert chunk.std() > 0


# ----------------------------------------------------------------------------------------------------
# 8. LeRobot's mixed bf16/fp32 mode


def test_bfloat16_import_keeps_lerobots_fp32_projections(imported, cases):
    """precision="bfloat16": VLM/expert bf16; state/action/time heads and cross-attn k/v fp32; close chunk."""
    bf = import_quietly(FIXTURE / "pretrained_model", precision="bfloat16")
    m = bf.model.model
    vlm = m.vlm_with_expert.vlm.model
    experts = m.vlm_with_expert.lm_expert.layers
    assert bf.model.config.self_attn_every_n_layers == 2 and len(experts) == 2
    bf16 = [
        vlm.vision_model.embeddings.patch_embedding.kernel,
        vlm.vision_model.encoder.layers[0].mlp.fc1.kernel,
        vlm.connector.modality_projection.proj.kernel,
        vlm.text_model.embed_tokens.embedding,
        vlm.text_model.layers[1].self_attn.k_proj.kernel,
        vlm.text_model.layers[0].mlp.down_proj.kernel,
        experts[0].self_attn.q_proj.kernel,
        experts[0].self_attn.k_proj.kernel,
        experts[0].self_attn.v_proj.kernel,
        experts[1].self_attn.q_proj.kernel,
        experts[1].self_attn.o_proj.kernel,
        experts[1].mlp.gate_proj.kernel,
        experts[1].input_layernorm.weight,
    ]
    fp32 = [
        experts[1].self_attn.k_proj.kernel,  # cross-attention (odd layer): plain nn.Linear in LeRobot
        experts[1].self_attn.v_proj.kernel,
    ]
    for name in (
        "state_proj",
        "action_in_proj",
        "action_out_proj",
        "action_time_mlp_in",
        "action_time_mlp_out",
    ):
        fp32 += [getattr(m, name).kernel, getattr(m, name).bias]
    assert all(v.get_value().dtype == jnp.bfloat16 for v in bf16)
    assert all(v.get_value().dtype == jnp.float32 for v in fp32)

    obs = observation(cases)
    sample = nnx.jit(lambda mod, o, n: sv.sample_actions(mod, o, noise=n))
    ref = np.asarray(sample(imported.model, obs, cases["sample.noise"]))
    got = np.asarray(sample(bf.model, obs, cases["sample.noise"]))
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.isfinite(got).all()
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 2e-2 * scale  # measured: 3e-3
    assert not np.array_equal(got, ref)  # bf16 really ran


# ----------------------------------------------------------------------------------------------------
# 9. training mechanics


def test_loss_with_rng_trains_the_expert(imported, cases):
    """Random noise/time from the rng: finite loss, finite gradients, every expert leaf non-zero."""
    batch = {**observation(cases), "action": cases["train.action"]}

    @nnx.jit
    def value_and_grad(model, batch, rng):
        return nnx.value_and_grad(lambda m: sv.loss(m, batch, rng)[0])(model)

    value, grads = value_and_grad(imported.model, batch, jax.random.key(0))
    value2, _ = value_and_grad(imported.model, batch, jax.random.key(1))
    assert np.isfinite(float(value)) and float(value) > 0
    assert float(value) != float(value2)  # the rng draws the noise and time
    flat = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}
    assert all(np.isfinite(g).all() for g in flat.values())
    expert = {k: g for k, g in flat.items() if "lm_expert" in k}
    assert len(expert) == 2 * 9 + 1  # 2 layers x (q, k, v, o, gate, up, down, 2 norms) + final norm
    assert all(np.abs(g).max() > 0 for g in expert.values())
    assert not any(".vlm." in k for k in flat)  # the VLM is frozen by default
    assert np.abs(flat["model.state_proj.kernel"]).max() > 0


def test_freezing_knobs(imported):
    """train_expert_only freezes the VLM, freeze_vision_encoder the vision tower, train_state_proj."""

    def build(**changes):
        cfg = dataclasses.replace(imported.model.config, **changes)
        return nnx.eval_shape(lambda: SmolVLAPolicy(cfg, imported.spec, imported.stats, rngs=nnx.Rngs(0)))

    def trainable(model) -> list[str]:
        return leaf_paths(nnx.state(model, nnx.Param))

    default = build()
    vlm = default.model.vlm_with_expert.vlm
    assert leaf_paths(nnx.state(vlm, nnx.Param)) == []
    assert len(leaf_paths(nnx.state(vlm, Buffer))) == len(leaf_paths(nnx.state(vlm)))
    assert isinstance(vlm.model.text_model.layers[0].self_attn.q_proj.kernel, Buffer)
    params = trainable(default)
    assert any("lm_expert" in p for p in params) and "model.state_proj.kernel" in params

    partly = trainable(build(train_expert_only=False, freeze_vision_encoder=True))
    assert not any("vision_model" in p for p in partly)
    assert any("text_model" in p for p in partly) and any("connector" in p for p in partly)
    assert isinstance(
        build(train_expert_only=False).model.vlm_with_expert.vlm.model.vision_model.post_layernorm.scale,
        Buffer,
    )

    everything = trainable(build(train_expert_only=False, freeze_vision_encoder=False))
    assert len(everything) == len(leaf_paths(nnx.state(build().model)))
    assert any("vision_model" in p for p in everything)

    no_state = build(train_state_proj=False)
    assert isinstance(no_state.model.state_proj.kernel, Buffer)
    assert not any("state_proj" in p for p in trainable(no_state))


def test_mean_valid_loss_reduction(imported, cases):
    """loss_reduction="mean_valid": the mean over valid steps and the real action dims of `losses`;
    the default "mean_all" averages everything, padding included."""
    is_pad = np.zeros((2, 8), bool)
    is_pad[:, -3:] = True
    batch = {**observation(cases), "action": cases["train.action"], "action_is_pad": is_pad}
    valid_model = with_config(imported.model, loss_reduction="mean_valid")

    @nnx.jit
    def run(valid_model, all_model, batch, noise, time):
        per = sv.losses(valid_model, batch, None, noise=noise, time=time)
        total, metrics = sv.loss(valid_model, batch, None, noise=noise, time=time)
        everything, _ = sv.loss(all_model, batch, None, noise=noise, time=time)
        return per, total, metrics["loss"], everything

    per, total, metric, everything = run(
        valid_model, imported.model, batch, cases["train.noise"], cases["train.time"]
    )
    per = np.asarray(per, np.float64)
    assert per.shape == (2, 8, 32)
    expected = per[:, :5, :6].mean()
    np.testing.assert_allclose(float(total), expected, rtol=1e-6)
    assert float(metric) == float(total)
    np.testing.assert_allclose(float(everything), per.mean(), rtol=1e-6)
    assert abs(float(everything) - expected) > 1e-3 * expected


def test_state_dropout_replaces_some_samples_state_by_the_mean(imported, cases):
    """state_dropout (training only): each sample's losses are those of its own state or of the
    dataset's mean state, drawn per sample from the rng; 0 (LeRobot) leaves the state alone."""
    batch = {**observation(cases), "action": cases["train.action"]}
    n = batch["observation.state"].shape[0]
    mean_state = np.asarray(
        imported.model.normalizer.unnormalize("observation.state", jnp.zeros_like(batch["observation.state"]))
    )
    model = with_config(imported.model, state_dropout=0.5)
    noise, time = cases["train.noise"], cases["train.time"]

    @nnx.jit
    def per_sample(model, batch, rng):
        return sv.losses(model, batch, rng, noise=noise, time=time).mean((1, 2))

    kept = np.asarray(per_sample(imported.model, batch, None))
    dropped = np.asarray(per_sample(imported.model, {**batch, "observation.state": mean_state}, None))
    assert np.all(np.abs(kept - dropped) > 1e-4 * kept)  # the state matters to this model
    seen = set()
    for seed in range(12):
        got = np.asarray(per_sample(model, batch, jax.random.key(seed)))
        for i in range(n):
            if np.isclose(got[i], kept[i], rtol=1e-5):
                seen.add("kept")
            else:
                np.testing.assert_allclose(got[i], dropped[i], rtol=1e-5)
                seen.add("dropped")
    assert seen == {"kept", "dropped"}
    with pytest.raises(ValueError, match="state_dropout > 0 needs an rng"):
        sv.losses(model, batch, None, noise=noise, time=time)
    with pytest.raises(ValueError, match=r"state_dropout must be in \[0, 1\), got 1.0"):
        dataclasses.replace(imported.model.config, state_dropout=1.0)


def test_sampling_noise_scale_scales_the_flows_starting_point(imported, cases):
    """sampling_noise_scale s: the chunk is the one sampled from s * noise (1 = LeRobot's chunk); at 0
    every noise gives the same chunk; the training loss does not change."""
    obs = observation(cases)
    noise = np.asarray(cases["sample.noise"])
    sample = nnx.jit(lambda mod, o, n: sv.sample_actions(mod, o, noise=n))
    half = with_config(imported.model, sampling_noise_scale=0.5)
    zero = with_config(imported.model, sampling_noise_scale=0.0)
    ref = np.asarray(sample(imported.model, obs, noise))
    np.testing.assert_allclose(np.asarray(sample(half, obs, noise)), np.asarray(sample(imported.model, obs, 0.5 * noise)), rtol=1e-5, atol=1e-6)  # fmt: skip
    assert np.abs(np.asarray(sample(half, obs, noise)) - ref).max() > 1e-3
    z1, z2 = np.asarray(sample(zero, obs, noise)), np.asarray(sample(zero, obs, -noise))
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_allclose(z1, np.asarray(sample(imported.model, obs, np.zeros_like(noise))), rtol=1e-6, atol=1e-6)  # fmt: skip
    batch = {**obs, "action": cases["train.action"]}
    t_noise, t_time = cases["train.noise"], cases["train.time"]
    loss = nnx.jit(lambda mod, b: sv.loss(mod, b, None, noise=t_noise, time=t_time)[0])
    assert float(loss(zero, batch)) == float(loss(imported.model, batch))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sampling_noise_scale must be a finite number >= 0"):
            dataclasses.replace(imported.model.config, sampling_noise_scale=bad)


def test_optimizer_preset_follows_the_config():
    """AdamW(1e-4, (0.9, 0.95), 1e-8, 1e-10), clip 10, cosine decay with warmup from the config."""
    p = sv.optimizer_preset(SmolVLAConfig())
    assert (p.name, p.lr, p.betas, p.eps, p.weight_decay, p.grad_clip_norm) == (
        "adamw",
        1e-4,
        (0.9, 0.95),
        1e-8,
        1e-10,
        10.0,
    )
    assert p.scheduler == {
        "name": "cosine_decay_with_warmup",
        "peak_lr": 1e-4,
        "decay_lr": 2.5e-6,
        "num_warmup_steps": 1000,
        "num_decay_steps": 30_000,
    }
    cfg = SmolVLAConfig(
        optimizer_lr=3e-4,
        optimizer_betas=(0.8, 0.9),
        optimizer_grad_clip_norm=1.5,
        scheduler_warmup_steps=7,
        scheduler_decay_steps=70,
        scheduler_decay_lr=1e-6,
    )
    q = sv.optimizer_preset(cfg)
    assert (q.lr, q.betas, q.grad_clip_norm) == (3e-4, (0.8, 0.9), 1.5)
    assert q.scheduler == {
        "name": "cosine_decay_with_warmup",
        "peak_lr": 3e-4,
        "decay_lr": 1e-6,
        "num_warmup_steps": 7,
        "num_decay_steps": 70,
    }
    assert sv.ema_preset(cfg) is None


def test_ema_decay_keeps_a_constant_decay_average_and_stays_out_of_lerobots_config():
    """ema_decay d: the trainer's EMA decays by d from the third update on (openpi's pi0 EMA); it is
    a jrobot option, so LeRobot's config.json never carries it and an imported checkpoint has none."""
    cfg = SmolVLAConfig(ema_decay=0.99)
    preset = sv.ema_preset(cfg)
    assert preset is not None
    assert float(preset.decay(0)) == float(preset.decay(1)) == 0.0  # the first updates copy the parameters
    np.testing.assert_allclose([float(preset.decay(n)) for n in (2, 10, 10_000)], 0.99, rtol=1e-6)
    imported, notes = SmolVLAConfig.from_lerobot({"type": "smolvla", "ema_decay": 0.5})
    assert imported.ema_decay is None and any("'ema_decay'" in n for n in notes)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ema_decay must be a number in \\[0, 1\\)"):
            SmolVLAConfig(ema_decay=bad)


# ----------------------------------------------------------------------------------------------------
# 10. SmolVLM2's pretrained weights (load_vlm_weights)


def test_load_pretrained_vlm_weights(tmp_path, imported):
    """build(load_vlm_weights=True) copies the VLM folder's weights; extra text layers and lm_head are
    left out; a missing VLM tensor is an error naming it."""
    vlm_dir = copy_flat(FIXTURE / "vlm", tmp_path / "my_vlm")
    features = fixture_features()
    config = fixture_config(vlm_model_name=str(vlm_dir))
    fresh = sv.build(config, features, imported.stats)
    assert Path(fresh.config.vlm_path) == vlm_dir.absolute()
    template = state_dict(fresh.model.vlm_with_expert.vlm)
    assert all(k.split(".")[1] in ("vision_model", "connector", "text_model") for k in template)
    rng = np.random.default_rng(0)
    # SmolVLM2's hub file is bfloat16; the float32 model takes the values exactly
    weights = {k: rng.standard_normal(v.shape).astype(ml_dtypes.bfloat16) for k, v in template.items()}
    extra = {
        k.replace("text_model.layers.0.", f"text_model.layers.{i}."): rng.standard_normal(v.shape).astype(
            np.float32
        )
        for k, v in template.items()
        if k.startswith("model.text_model.layers.0.")
        for i in (2, 3)
    }
    extra["lm_head.weight"] = rng.standard_normal((320, 64)).astype(np.float32)
    save_file({**weights, **extra}, str(vlm_dir / "model.safetensors"))

    loaded = sv.build(dataclasses.replace(config, load_vlm_weights=True), features, imported.stats)
    assert len(loaded.model.vlm_with_expert.vlm.model.text_model.layers) == 2
    got = state_dict(loaded.model.vlm_with_expert.vlm)
    assert set(got) == set(weights)
    key = "model.text_model.layers.1.self_attn.k_proj.weight"
    assert got[key].dtype == np.float32
    np.testing.assert_array_equal(got[key], weights[key].astype(np.float32))
    for k, v in weights.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32), err_msg=k)
    # without load_vlm_weights the folder's weights are not read
    not_loaded = state_dict(sv.build(config, features, imported.stats).model.vlm_with_expert.vlm)
    assert not np.array_equal(not_loaded[key], weights[key].astype(np.float32))

    dropped = sv.load_pretrained_vlm(fresh, vlm_dir)
    assert sorted(dropped) == sorted(extra)

    missing = "model.connector.modality_projection.proj.weight"
    save_file(
        {k: v for k, v in {**weights, **extra}.items() if k != missing}, str(vlm_dir / "model.safetensors")
    )
    with pytest.raises(StateDictError, match=re.escape(missing)):
        sv.build(dataclasses.replace(config, load_vlm_weights=True), features, imported.stats)
    (vlm_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("model.safetensors")):
        sv.build(dataclasses.replace(config, load_vlm_weights=True), features, imported.stats)

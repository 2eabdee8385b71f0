"""SmolVLA parity with LeRobot 0.4.4 (hard gate): imported checkpoints against LeRobot's own outputs.

References: the public fixture (../shared/fixtures/parity/smolvla_so101_tiny) and the variants in
tests/fixtures/smolvla/ (written by LeRobot itself with tools/make_smolvla_references.py), which set other
VLM sizes, camera counts and shapes, empty cameras, image special tokens, prefix padding, padded state/
action widths, flow steps, expert layer counts, layer patterns and the pi-Aloha conversions.
Gates: normalized chunk max |diff| <= 1e-4; unnormalized chunk <= 1e-4 * (1 + max |chunk|); training
loss within 1e-5 relative; per-element losses within 1e-5 of their scale; float32 throughout.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from jrobot.policies.smolvla import (
    LANGUAGE_MASK,
    LANGUAGE_TOKENS,
    from_lerobot,
    loss,
    losses,
    predict_chunk_normalized,
    sample_actions,
)
from jrobot.policies.spec import images_chw_to_hwc

REPO = Path(__file__).resolve().parents[2]
VARIANTS = REPO / "tests" / "fixtures" / "smolvla"


def reference_dirs() -> list[Path]:
    from tests.conftest import PARITY_FIXTURES

    dirs = [PARITY_FIXTURES / "smolvla_so101_tiny"]
    dirs += sorted(p for p in VARIANTS.glob("*") if (p / "cases.npz").is_file())
    return dirs


@pytest.fixture(scope="module", params=reference_dirs(), ids=lambda p: p.name)
def reference(request):
    folder: Path = request.param
    if not (folder / "pretrained_model" / "config.json").is_file():
        pytest.fail(f"SmolVLA reference missing at {folder}")
    with np.load(folder / "cases.npz") as z:
        cases = {k: z[k] for k in z.files}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the import's notes (lm_head left out) are tested elsewhere
        imported = from_lerobot(folder / "pretrained_model")
    return folder, imported, cases


def observation(cases: dict[str, np.ndarray], *, tokens: bool = True) -> dict[str, np.ndarray]:
    obs = {
        k[len("obs.") :]: images_chw_to_hwc(v) if ".images." in k else v
        for k, v in cases.items()
        if k.startswith("obs.") and k != "obs.task"
    }
    if tokens:
        obs[LANGUAGE_TOKENS] = cases["norm.observation.language.tokens"]
        obs[LANGUAGE_MASK] = cases["norm.observation.language.attention_mask"]
    return obs


def test_tokenizer_gives_lerobot_token_ids(reference):
    _, imported, cases = reference
    tok = imported.model.tokenizer
    ids, mask = tok.encode([str(t) for t in cases["obs.task"]], padding=imported.model.config.pad_language_to)
    np.testing.assert_array_equal(ids, cases["norm.observation.language.tokens"])
    np.testing.assert_array_equal(mask, cases["norm.observation.language.attention_mask"])


def test_state_normalization(reference):
    _, imported, cases = reference
    got = imported.model.normalizer.normalize("observation.state", cases["obs.observation.state"])
    np.testing.assert_allclose(np.asarray(got), cases["norm.observation.state"], atol=1e-5, rtol=1e-6)


def test_sampled_chunk_matches_lerobot(reference):
    _, imported, cases = reference
    obs = observation(cases)
    with jax.default_matmul_precision("highest"):
        norm = np.asarray(predict_chunk_normalized(imported.model, obs, noise=cases["sample.noise"]))
        chunk = np.asarray(sample_actions(imported.model, obs, noise=cases["sample.noise"]))
    expected = cases["expected.action_chunk"]
    assert norm.shape == cases["expected.action_chunk_norm"].shape
    assert np.abs(norm - cases["expected.action_chunk_norm"]).max() <= 1e-4
    assert np.abs(chunk - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


def test_training_loss_matches_lerobot(reference):
    _, imported, cases = reference
    batch = {**observation(cases), "action": cases["train.action"]}
    with jax.default_matmul_precision("highest"):
        per = np.asarray(
            losses(imported.model, batch, None, noise=cases["train.noise"], time=cases["train.time"])
        )
        total, metrics = loss(
            imported.model, batch, None, noise=cases["train.noise"], time=cases["train.time"]
        )
    ref = cases["expected.losses"]
    assert per.shape == ref.shape
    assert np.abs(per - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert abs(float(total) / float(cases["expected.loss"]) - 1) <= 1e-5
    assert float(metrics["loss"]) == float(total)


def test_sampling_is_one_compiled_function(reference):
    """Every Euler step runs inside one jitted scan: more steps add no operations to the program."""
    _, imported, cases = reference
    from flax import nnx

    obs = {**observation(cases), "noise": cases["sample.noise"]}

    def dots(num_steps: int) -> int:
        model = nnx.clone(imported.model)
        model.model.config = dataclasses.replace(model.config, num_steps=num_steps)
        graphdef, state = nnx.split(model)
        fn = jax.jit(lambda s, o: sample_actions(nnx.merge(graphdef, s), o))
        return fn.lower(state, obs).as_text().count("stablehlo.dot_general")

    assert dots(2) == dots(7) > 0

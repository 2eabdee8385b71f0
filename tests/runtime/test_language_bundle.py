"""A language-conditioned policy from export to the runtime: tokenizer in the bundle, task in, actions out.

The policy is a stub NNX model (no VLA needed) whose actions are the masked sum of its token ids plus
the state and the initial noise, so the tests prove the instruction reaches the exported function
exactly as `TaskTokenizer` tokenizes it, with the dtypes (int32 ids, bool mask) and the (B, L) shape
the LANGUAGE contract gives, through `jax.export`, `BundlePolicy`, the control loop and `jrobot.run`.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jrobot.bundle import POLICY_JSON, BundleError, BundleInfo, read_info
from jrobot.features import Feature
from jrobot.language import LANGUAGE_MASK_KEY, LANGUAGE_TOKENS_KEY, TaskTokenizer
from jrobot.policies.normalize import Normalizer
from jrobot.policies.spec import FeatureType, PolicyFeature, PolicySpec
from jrobot.runtime.loop import PolicyController
from jrobot.runtime.policy import BundlePolicy
from jrobot.train.export import _observation_avals, write_bundle

L = 8
CHUNK, A = 2, 3
STATE = "observation.state"
ACTION_NAMES = ["j0", "j1", "j2"]


def _spec(*, language: bool = True, length: int = L, state: int = 2, action: int = A) -> PolicySpec:
    inputs = {STATE: PolicyFeature(FeatureType.STATE, (state,))}
    if language:
        inputs[LANGUAGE_TOKENS_KEY] = PolicyFeature(FeatureType.LANGUAGE, (length,))
        inputs[LANGUAGE_MASK_KEY] = PolicyFeature(FeatureType.LANGUAGE, (length,))
    return PolicySpec(
        type="lang_stub",
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action,))},
        normalization_mapping={},
        n_obs_steps=1,
        chunk_size=CHUNK,
        n_action_steps=CHUNK,
        observation_delta_indices=None,
        action_delta_indices=tuple(range(CHUNK)),
        horizon=CHUNK,
        noise_shape=(CHUNK, action),
    )


class LangStub(nnx.Module):
    """Just what the exporter reads: `.spec`, `.normalizer`, `.tokenizer` and one parameter."""

    def __init__(self, spec: PolicySpec, tokenizer: TaskTokenizer | None):
        self.spec = spec
        self.tokenizer = tokenizer
        self.normalizer = Normalizer({STATE: spec.input_features[STATE]}, {}, None)
        self.scale = nnx.Param(jnp.arange(1.0, spec.action_dim + 1.0))


def _sample_actions(model, observation, rng=None):
    tokens = observation[LANGUAGE_TOKENS_KEY]
    mask = observation[LANGUAGE_MASK_KEY]
    # the LANGUAGE contract, checked while tracing: (B, L) int32 ids and bool mask, no history axis
    assert tokens.dtype == jnp.int32 and mask.dtype == jnp.bool_, (tokens.dtype, mask.dtype)
    assert tokens.ndim == 2 and mask.ndim == 2 and tokens.shape[1] == mask.shape[1] == L
    b = tokens.shape[0]
    shape = (b, CHUNK, model.spec.action_dim)
    noise = observation["noise"] if "noise" in observation else jax.random.normal(rng, shape)
    ids = jnp.sum(jnp.where(mask, tokens, 0), axis=1).astype(jnp.float32)
    base = ids + 1000.0 * jnp.sum(mask, axis=1) + observation[STATE][:, -1, 0]
    return base[:, None, None] * model.scale[...] + noise


STUB = types.SimpleNamespace(sample_actions=_sample_actions, inference_model=lambda model: model)


def _expected(tok: TaskTokenizer, tasks, state: np.ndarray, noise: np.ndarray) -> np.ndarray:
    ids, mask = tok.encode(list(tasks), padding="max_length")
    base = (ids * mask).sum(1) + 1000.0 * mask.sum(1) + state[:, 0, 0]
    return base[:, None, None] * np.asarray([1.0, 2.0, 3.0]) + noise


@pytest.fixture(scope="module")
def tokenizer(shared_dir: Path) -> TaskTokenizer:
    return TaskTokenizer.from_dir(
        shared_dir / "fixtures" / "parity" / "smolvla_so101_tiny" / "vlm", max_length=L
    )


def _features() -> dict[str, Feature]:
    return {
        "action": Feature("float32", (A,), ACTION_NAMES),
        STATE: Feature("float32", (2,), ["s0", "s1"]),
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer) -> Path:
    out = tmp_path_factory.mktemp("lang") / "bundle"
    write_bundle(
        LangStub(_spec(), tokenizer), STUB, out, features=_features(), fps=10, robot_type=None, source={}
    )
    return out


@pytest.fixture(scope="module")
def policy(bundle) -> BundlePolicy:
    return BundlePolicy(bundle)


def _obs(b: int) -> dict[str, np.ndarray]:
    return {STATE: np.arange(b * 2, dtype=np.float32).reshape(b, 1, 2)}


def _noise(b: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((b, CHUNK, A)).astype(np.float32)


TASKS = ["pick the cube", "w3 w7 w1 the cube"]


# -- export ------------------------------------------------------------------------------------------
def test_language_avals_have_no_history_axis():
    avals = _observation_avals(_spec(), jnp.uint8, (4,))
    assert avals[LANGUAGE_TOKENS_KEY].shape == (4, L) and avals[LANGUAGE_TOKENS_KEY].dtype == jnp.int32
    assert avals[LANGUAGE_MASK_KEY].shape == (4, L) and avals[LANGUAGE_MASK_KEY].dtype == jnp.bool_
    assert avals[STATE].shape == (4, 1, 2)


def test_bundle_holds_the_tokenizer(bundle, tokenizer):
    info = read_info(bundle)
    assert info.language == {"tokenizer_dir": "tokenizer", "max_length": L}
    assert json.loads((bundle / POLICY_JSON).read_text())["language"] == info.language
    assert TaskTokenizer.load(bundle / "tokenizer") == tokenizer
    assert info.variants == ["uint8", "uint8+noise"]


def test_export_needs_the_models_tokenizer(tmp_path, tokenizer):
    with pytest.raises(
        ValueError, match=r"needs a `tokenizer` attribute holding a jrobot.language.TaskTokenizer"
    ):
        write_bundle(
            LangStub(_spec(), None),
            STUB,
            tmp_path / "b",
            features=_features(),
            fps=10,
            robot_type=None,
            source={},
        )
    with pytest.raises(ValueError, match=r"must have shape \(L,\) with L = the tokenizer's max_length 8"):
        write_bundle(
            LangStub(_spec(length=L + 1), tokenizer),
            STUB,
            tmp_path / "b",
            features=_features(),
            fps=10,
            robot_type=None,
            source={},
        )
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.tmp").exists()


# -- BundleInfo JSON -----------------------------------------------------------------------------------
@pytest.mark.parametrize("language", [None, {"tokenizer_dir": "tokenizer", "max_length": 48}])
def test_bundle_info_json_round_trip(tmp_path, language):
    info = BundleInfo(
        spec=_spec(language=language is not None, length=48),
        stats={},
        features=_features(),
        fps=30,
        robot_type=None,
        image_shapes={},
        variants=["uint8"],
        stochastic=True,
        source={},
        training_config=None,
        language=language,
    )
    d = json.loads(json.dumps(info.to_json()))
    assert d["version"] == 2 and d["language"] == language
    assert BundleInfo.from_json(d, path=tmp_path) == info


def test_bundles_without_a_language_entry_still_load(tmp_path):
    d = BundleInfo(
        spec=_spec(language=False),
        stats={},
        features=_features(),
        fps=30,
        robot_type=None,
        image_shapes={},
        variants=["uint8"],
        stochastic=True,
        source={},
        training_config=None,
    ).to_json()
    del d["language"]  # as written before the field existed
    assert BundleInfo.from_json(d, path=tmp_path).language is None
    d["language"] = {"max_length": 4}
    with pytest.raises(BundleError, match="'language' must be"):
        BundleInfo.from_json(d, path=tmp_path)


# -- runtime -----------------------------------------------------------------------------------------
def test_task_reaches_the_exported_function(policy, tokenizer):
    assert policy.needs_task and policy.tokenizer == tokenizer
    obs, noise = _obs(2), _noise(2)
    want = _expected(tokenizer, TASKS, obs[STATE], noise)
    # a (B,) string array in the observation, a list, or the task= argument
    np.testing.assert_allclose(
        policy.predict({**obs, "task": np.asarray(TASKS)}, noise=noise), want, rtol=1e-6
    )
    np.testing.assert_allclose(policy.predict({**obs, "task": TASKS}, noise=noise), want, rtol=1e-6)
    np.testing.assert_allclose(policy.predict(obs, task=TASKS, noise=noise), want, rtol=1e-6)
    # one string is the instruction of every row; the observation's task wins over task=
    one = _expected(tokenizer, [TASKS[0]] * 2, obs[STATE], noise)
    np.testing.assert_allclose(policy.predict(obs, task=TASKS[0], noise=noise), one, rtol=1e-6)
    np.testing.assert_allclose(
        policy.predict({**obs, "task": TASKS[0]}, task=TASKS[1], noise=noise), one, rtol=1e-6
    )
    assert not np.allclose(one, want)  # the two tasks differ, so the test can tell them apart


def test_pre_tokenized_language_inputs_are_used_as_they_are(policy, tokenizer):
    obs, noise = _obs(2), _noise(2)
    ids, mask = tokenizer.encode(TASKS, padding="max_length")  # int64, as LeRobot's processor gives
    got = policy.predict(
        {**obs, LANGUAGE_TOKENS_KEY: ids, LANGUAGE_MASK_KEY: mask}, task="ignored", noise=noise
    )
    np.testing.assert_allclose(got, _expected(tokenizer, TASKS, obs[STATE], noise), rtol=1e-6)
    with pytest.raises(BundleError, match=rf"{LANGUAGE_TOKENS_KEY}: expected shape \(2, 8\), got \(2, 5\)"):
        policy.predict({**obs, LANGUAGE_TOKENS_KEY: ids[:, :5], LANGUAGE_MASK_KEY: mask[:, :5]})
    with pytest.raises(BundleError, match="need all of"):
        policy.predict({**obs, LANGUAGE_TOKENS_KEY: ids})
    with pytest.raises(BundleError, match="token ids must be integers"):
        policy.predict({**obs, LANGUAGE_TOKENS_KEY: ids.astype(np.float32), LANGUAGE_MASK_KEY: mask})


def test_missing_or_bad_task_is_a_clear_error(policy):
    with pytest.raises(
        BundleError, match=r"this policy needs a task instruction \(--task or observation\['task'\]\)"
    ):
        policy.predict(_obs(1))
    with pytest.raises(BundleError, match="3 task instructions for a batch of 2 observations"):
        policy.predict(_obs(2), task=["a", "b", "c"])
    with pytest.raises(BundleError, match="task 1 is not a string"):
        policy.predict(_obs(2), task=["a", 3])


def test_warmup_needs_no_task(policy):
    policy.warmup()


def test_controller_passes_the_current_task_every_step(policy, tokenizer):
    controller = PolicyController(policy, mode="sync", task=TASKS[0])
    try:
        robot_obs = {"s0": 0.0, "s1": 0.0}
        policy.seed(0)
        controller.act(robot_obs, 0.1)
        controller.schedule.reset()  # force a fresh chunk on the next step
        controller.task = TASKS[1]
        assert controller.observations.push(robot_obs)["task"] == TASKS[1]
        seen = []
        real = policy.predict

        def spy(observation, **kw):
            seen.append(observation.get("task"))
            return real(observation, **kw)

        policy.predict = spy
        try:
            controller.act(robot_obs, 0.1)
        finally:
            del policy.predict
        assert seen == [TASKS[1]]
    finally:
        controller.close()


def test_a_task_for_a_policy_without_language_is_ignored(tmp_path, caplog):
    out = tmp_path / "plain"
    info = write_bundle(
        LangStub(_spec(language=False), None),
        _PlainStub,
        out,
        features=_features(),
        fps=10,
        robot_type=None,
        source={},
    )
    assert info.language is None and json.loads((out / POLICY_JSON).read_text())["language"] is None
    plain = BundlePolicy(out)
    assert not plain.needs_task and plain.tokenizer is None
    noise = _noise(1)
    want = plain.predict(_obs(1), noise=noise)
    with caplog.at_level("WARNING", logger="jrobot.run"):
        np.testing.assert_array_equal(plain.predict({**_obs(1), "task": "pick"}, noise=noise), want)
        np.testing.assert_array_equal(plain.predict(_obs(1), task="pick", noise=noise), want)
    assert sum("takes no task instruction" in r.message for r in caplog.records) == 1


def _plain_sample_actions(model, observation, rng=None):
    return observation[STATE][:, -1, :1, None] * model.scale[...] + observation.get(
        "noise", jnp.zeros((observation[STATE].shape[0], CHUNK, A))
    )


_PlainStub = types.SimpleNamespace(sample_actions=_plain_sample_actions, inference_model=lambda model: model)


# -- python -m jrobot.run, offline ---------------------------------------------------------------------
def test_run_offline_with_a_task_array(bundle, tokenizer, tmp_path):
    from jrobot import run

    obs, noise = _obs(2), _noise(2)
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inp, task=np.asarray(TASKS), noise=noise, **obs)
    assert run.main(["--policy", str(bundle), "--observations", str(inp), "--out", str(out)]) == 0
    with np.load(out) as z:
        np.testing.assert_allclose(z["action"], _expected(tokenizer, TASKS, obs[STATE], noise), rtol=1e-6)

    # no task in IN.npz: --task is every row's instruction
    np.savez(inp, noise=noise, **obs)
    assert (
        run.main(["--policy", str(bundle), "--observations", str(inp), "--out", str(out), "--task", TASKS[1]])
        == 0
    )
    with np.load(out) as z:
        np.testing.assert_allclose(
            z["action"], _expected(tokenizer, [TASKS[1]] * 2, obs[STATE], noise), rtol=1e-6
        )

    with pytest.raises(BundleError, match=r"needs a task instruction \(--task"):
        run.main(["--policy", str(bundle), "--observations", str(inp), "--out", str(out)])


# -- python -m jrobot.eval -----------------------------------------------------------------------------
def test_eval_follows_the_envs_instruction_or_task(tmp_path, tokenizer):
    from jrobot.features import SO101_JOINT_KEYS
    from jrobot.runtime.evaluate import evaluate

    out = tmp_path / "sim"
    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        STATE: Feature("float32", (6,), list(SO101_JOINT_KEYS)),
    }
    write_bundle(
        LangStub(_spec(state=6, action=6), tokenizer),
        STUB,
        out,
        features=feats,
        fps=30,
        robot_type=None,
        source={},
    )
    policy = BundlePolicy(out)
    seen = []
    real = policy.predict

    def spy(observation, **kw):
        seen.append(observation.get("task"))
        return real(observation, **kw)

    policy.predict = spy
    report = evaluate(policy, episodes=1, max_steps=3, videos=False)
    env_task = "Pick up the red cube and place it in the blue bin."
    assert report["episodes"][0]["task"] == env_task and set(seen) == {env_task}
    seen.clear()
    report = evaluate(policy, episodes=1, max_steps=3, videos=False, task="pick the cube")
    assert report["episodes"][0]["task"] == "pick the cube" and set(seen) == {"pick the cube"}


def _sim_language_bundle(tmp_path, tokenizer) -> BundlePolicy:
    from jrobot.features import SO101_JOINT_KEYS

    out = tmp_path / "sim"
    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        STATE: Feature("float32", (6,), list(SO101_JOINT_KEYS)),
    }
    spec = _spec(state=6, action=6)
    write_bundle(LangStub(spec, tokenizer), STUB, out, features=feats, fps=30, robot_type=None, source={})
    return BundlePolicy(out)


def test_eval_on_pick_color_swaps_the_instruction_and_reports_wrong_objects(tmp_path, tokenizer):
    """The swap test re-targets each episode on its own layout; --task sets the env's target too."""
    from jrobot.runtime.evaluate import evaluate

    policy = _sim_language_bundle(tmp_path, tokenizer)
    seen = []
    real = policy.predict

    def spy(observation, **kw):
        seen.append(observation.get("task"))
        return real(observation, **kw)

    policy.predict = spy
    env = "jrobot/SO101PickColor-v0"
    plain = evaluate(policy, env_id=env, episodes=3, max_steps=2, videos=False, seed=7)
    swapped = evaluate(
        policy, env_id=env, episodes=3, max_steps=2, videos=False, seed=7, swap_instruction=True
    )
    colours = ("red", "green", "blue")

    def named(task: str) -> str:
        (colour,) = [c for c in colours if c in task.lower()]
        return colour

    for a, b in zip(plain["episodes"], swapped["episodes"], strict=True):
        assert named(a["task"]) != named(b["task"])
        assert a["wrong_object"] is False and b["wrong_object"] is False  # the arm barely moved
    assert plain["wrong_object_rate"] == 0.0 and swapped["swap_instruction"] is True
    assert {e["task"] for e in swapped["episodes"]} <= set(seen)
    told = evaluate(
        policy, env_id=env, episodes=1, max_steps=2, videos=False, task="Put the green cube in the bin."
    )
    assert told["episodes"][0]["task"] == "Put the green cube in the bin."
    with pytest.raises(ValueError, match="several"):
        evaluate(policy, episodes=1, max_steps=2, videos=False, swap_instruction=True)


def test_run_follows_each_episodes_instruction_on_pick_color(tmp_path, tokenizer):
    from jrobot import run
    from jrobot.sim.robot import SimRobot

    policy = _sim_language_bundle(tmp_path, tokenizer)
    seen = []
    real = policy.predict

    def spy(observation, **kw):
        seen.append(observation.get("task"))
        return real(observation, **kw)

    policy.predict = spy
    robot = SimRobot(task="pick_color", cameras=())
    robot.connect()
    tasks = []
    for ep in range(4):  # the instructions the sim gives these seeds
        robot.reset(seed=ep)
        tasks.append(robot.task)
    robot.disconnect()
    opts = run.RunOptions(policy=tmp_path, episodes=4, max_steps=2, seed=0, realtime=False)
    run.run_robot(SimRobot(task="pick_color", cameras=()), policy, opts)
    assert len(set(tasks)) > 1 and set(seen) == set(tasks)


def test_env_without_an_instruction_gives_none():
    from jrobot.runtime.evaluate import env_task

    env = types.SimpleNamespace(unwrapped=types.SimpleNamespace())
    assert env_task(env, {}) is None
    env.unwrapped.instruction = "stack the cubes"
    assert env_task(env, {}) == "stack the cubes"
    assert env_task(env, {"task": "from info"}) == "from info"


def test_run_on_a_robot_picks_the_instruction(policy, tmp_path):
    from jrobot.cli import CliError
    from jrobot.recording.record import DatasetWriterOptions
    from jrobot.runtime.drive import RunOptions, policy_task

    sim_arm = types.SimpleNamespace(task="the sim's own task")
    assert policy_task(policy, RunOptions(policy=tmp_path, task="pick the cube"), sim_arm) == "pick the cube"
    assert policy_task(policy, RunOptions(policy=tmp_path), sim_arm) == "the sim's own task"
    with pytest.raises(CliError, match=r"needs a task instruction \(--task"):
        policy_task(policy, RunOptions(policy=tmp_path), object())
    recorded = RunOptions(
        policy=tmp_path, dataset=DatasetWriterOptions(root=tmp_path / "rec", single_task="recorded task")
    )
    assert policy_task(policy, recorded, object()) == "recorded task"

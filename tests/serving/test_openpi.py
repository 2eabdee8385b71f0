"""openpi interoperability, both directions, with the real components.

- openpi clients -> `jrobot.serve`: the frames openpi-client's msgpack_numpy writes (re-implemented
  here from its source, bytes keys and all) are what `jrobot.serving.wire` reads and writes; a raw
  websocket client that behaves exactly like `WebsocketClientPolicy` (no version header, `Authorization:
  Api-Key`) gets the same actions as local inference; the real openpi-client 0.1.2 too when
  JROBOT_OPENPI_PYTHON names an interpreter that has it (`make test` builds one in .venvs/openpi with
  scripts/openpi_client_env.sh and sets it).
- jrobot -> openpi servers: `OpenpiPolicy` / `OpenpiObservations` and `python -m jrobot.run --policy
  openpi://...` against a stand-in openpi server written here (openpi's frame order: metadata `{}` first,
  then one reply per request; a text frame and a close on error).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import urllib.request

import msgpack
import numpy as np
import pytest
import websockets
from PIL import Image
from serve_helpers import REPO, serving
from websockets.sync.client import connect
from websockets.sync.server import serve

from jrobot.image_transforms import resize_frame
from jrobot.serving import wire
from jrobot.serving.client import OpenpiObservations, OpenpiPolicy, RemotePolicyError, parse_obs_map

TOKEN = "s3cret-token"
FRONT, WRIST, STATE = "observation.images.front", "observation.images.wrist", "observation.state"
BUNDLE_HW = (96, 128)  # the act_bundle's cameras
CHUNK = 10  # the act_bundle's chunk
OBS_MAP = (
    "observation/image=observation.images.front,observation/wrist_image=observation.images.wrist,"
    "observation/state=observation.state"
)
JOINTS = [f"joint{i}.pos" for i in range(6)]


# -- openpi-client's msgpack_numpy, as written in openpi_client/msgpack_numpy.py ------------------------
def openpi_pack_array(obj):
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def openpi_unpack_array(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


openpi_packb = functools.partial(msgpack.packb, default=openpi_pack_array)
openpi_unpackb = functools.partial(msgpack.unpackb, object_hook=openpi_unpack_array)


def openpi_resize_with_pad(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi's image_tools.resize_with_pad for one HWC uint8 image (PIL bilinear, centred, black pad)."""
    h, w = img.shape[:2]
    ratio = max(w / width, h / height)
    rh, rw = int(h / ratio), int(w / ratio)
    resized = Image.fromarray(img).resize((rw, rh), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - rw) / 2)), max(0, int((height - rh) / 2))))
    return np.asarray(canvas)


# -- (a) the bytes ----------------------------------------------------------------------------------------
def _sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=6).astype(np.float32),
        "f64": rng.normal(size=(2, 3)),
        "i16": np.arange(-4, 4, dtype=np.int16).reshape(2, 4),
        "u32": np.arange(5, dtype=np.uint32),
        "mask": np.array([True, False, True]),
        "big_endian": np.arange(3, dtype=">f4"),
        "empty": np.zeros((0, 7), np.float32),
        "strided": np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],  # not contiguous
    }


def test_openpi_packed_request_decodes_and_encoded_reply_unpacks_the_same():
    arrays = _sample_arrays()
    request = {**arrays, "prompt": "pick the cube", "nested": {"state": arrays["observation/state"]}}
    decoded = wire.decode(openpi_packb(request))
    assert decoded["prompt"] == "pick the cube"
    for k, a in [*arrays.items(), ("nested.state", arrays["observation/state"])]:
        got = decoded["nested"]["state"] if k == "nested.state" else decoded[k]
        assert isinstance(got, np.ndarray), k
        assert got.dtype == a.dtype and got.shape == a.shape, k
        np.testing.assert_array_equal(got, a, err_msg=k)

    reply = {"actions": np.random.default_rng(1).normal(size=(CHUNK, 6)).astype(np.float32), **arrays}
    reply["server_timing"] = {"infer_ms": 1.25}
    frame = wire.encode(reply)
    assert frame == openpi_packb(reply)  # byte for byte what openpi's packer writes
    back = openpi_unpackb(frame)
    assert back["server_timing"] == {"infer_ms": 1.25}
    for k, a in reply.items():
        if isinstance(a, np.ndarray):
            assert back[k].dtype == a.dtype and back[k].shape == a.shape, k
            np.testing.assert_array_equal(back[k], a, err_msg=k)


def test_numpy_scalars_travel_both_ways():
    scalars = {
        "f32": np.float32(1.5),
        "i64": np.int64(-(2**40)),
        "u8": np.uint8(255),
        "b": np.bool_(True),
    }
    decoded = wire.decode(openpi_packb(scalars))
    back = openpi_unpackb(wire.encode(scalars))
    assert wire.encode(scalars) == openpi_packb(scalars)
    for k, s in scalars.items():
        for got in (decoded[k], back[k]):
            assert isinstance(got, np.generic) and got.dtype == s.dtype and got == s, (k, got)
    # np.float64 subclasses float: msgpack packs it as a plain float on both sides, never calling `default`
    f64 = {"f64": np.float64(-2.25)}
    assert wire.encode(f64) == openpi_packb(f64) == msgpack.packb({"f64": -2.25})


# -- (b), (c) openpi clients against jrobot.serve ----------------------------------------------------------
@pytest.fixture(scope="module")
def served(act_bundle, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("openpi_token") / "token.txt"
    token_file.write_text(TOKEN + "\n")
    with serving(act_bundle, f"--token_file={token_file}") as s:
        yield s


@pytest.fixture(scope="module")
def local_policy(act_bundle):
    from jrobot.runtime.policy import BundlePolicy

    return BundlePolicy(act_bundle)


def _openpi_obs(seed: int) -> dict[str, np.ndarray]:
    """An unbatched observation as openpi clients send it: HWC uint8 at 224x224, state (6,)."""
    rng = np.random.default_rng(seed)
    return {
        FRONT: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        WRIST: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        STATE: rng.normal(size=6).astype(np.float32),
    }


def _local_actions(policy, obs: dict[str, np.ndarray]) -> np.ndarray:
    """What the server computes: images resized as the runtime resizes camera frames, a batch of one."""
    batch = {k: resize_frame(obs[k], BUNDLE_HW)[None] for k in (FRONT, WRIST)}
    batch[STATE] = obs[STATE][None]
    return policy.predict(batch)[0]


def _openpi_connect(port: int, api_key: str | None = TOKEN):
    """As `WebsocketClientPolicy._wait_for_server` connects: no version header, Api-Key when given."""
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    ws = connect(
        f"ws://127.0.0.1:{port}", compression=None, max_size=None, additional_headers=headers, proxy=None
    )
    metadata = openpi_unpackb(ws.recv(timeout=30))
    return ws, metadata


def _infer(ws, obs) -> dict | str:
    ws.send(openpi_packb(obs))
    reply = ws.recv(timeout=60)
    return reply if isinstance(reply, str) else openpi_unpackb(reply)


def test_openpi_style_client_gets_local_inference(served, local_policy):
    ws, metadata = _openpi_connect(served.port)
    try:
        assert metadata["policy_type"] == "act" and metadata["chunk_size"] == CHUNK
        for seed in (0, 1):
            obs = _openpi_obs(seed)
            reply = _infer(ws, {**obs, "prompt": "pick the cube"})
            assert isinstance(reply, dict), reply
            actions = reply["actions"]
            assert actions.shape == (CHUNK, 6) and actions.dtype == np.float32
            np.testing.assert_allclose(actions, _local_actions(local_policy, obs), atol=1e-5)
            assert reply["server_timing"]["infer_ms"] > 0
    finally:
        ws.close()


def test_healthz(served):
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=10) as r:
        assert r.status == 200


@pytest.mark.parametrize(("api_key", "status"), [(None, 401), ("wrong-token", 403)])
def test_handshake_refused_without_the_right_token(served, api_key, status):
    with pytest.raises(websockets.InvalidStatus) as e:
        _openpi_connect(served.port, api_key=api_key)
    assert e.value.response.status_code == status


def test_bad_request_gets_a_text_frame_and_the_connection_serves_on(served, local_policy):
    ws, _ = _openpi_connect(served.port)
    try:
        obs = _openpi_obs(2)
        reply = _infer(ws, {k: v for k, v in obs.items() if k != STATE})
        assert isinstance(reply, str) and STATE in reply, reply
        ack = _infer(ws, {"__ctrl__": "episode_start"})
        assert isinstance(ack, dict) and "__ack__" in ack, ack
        reply = _infer(ws, obs)
        assert isinstance(reply, dict), reply
        np.testing.assert_allclose(reply["actions"], _local_actions(local_policy, obs), atol=1e-5)
    finally:
        ws.close()


OPENPI_CLIENT_SCRIPT = """
import json, sys
import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy

port, token, obs_path, out_dir = sys.argv[1:]
obs = {k: v for k, v in np.load(obs_path).items()}
obs["prompt"] = "pick the cube"
client = WebsocketClientPolicy("127.0.0.1", int(port), api_key=token)
result = client.infer(obs)
np.save(out_dir + "/actions.npy", result["actions"])
meta = {
    "policy_type": client.get_server_metadata()["policy_type"],
    "infer_ms": float(result["server_timing"]["infer_ms"]),
    "numpy": np.__version__,
}
with open(out_dir + "/meta.json", "w") as f:
    json.dump(meta, f)
"""


def test_real_openpi_client(served, local_policy, tmp_path):
    python = os.environ.get("JROBOT_OPENPI_PYTHON")
    if not python:
        pytest.skip(
            "JROBOT_OPENPI_PYTHON is not set: `make test` builds an openpi-client venv with "
            "scripts/openpi_client_env.sh and sets it (or export the line that script prints)"
        )
    obs = _openpi_obs(3)
    np.savez(tmp_path / "obs.npz", **obs)
    script = tmp_path / "client.py"
    script.write_text(OPENPI_CLIENT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [python, str(script), str(served.port), TOKEN, str(tmp_path / "obs.npz"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["policy_type"] == "act" and meta["infer_ms"] > 0
    actions = np.load(tmp_path / "actions.npy")
    assert actions.shape == (CHUNK, 6) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, _local_actions(local_policy, obs), atol=1e-5)


# -- (d), (e) jrobot against an openpi server ---------------------------------------------------------------
class OpenpiStandIn:
    """openpi's websocket policy server, as far as the frames go; records what it receives.

    `mode`: "ok" replies (chunk, 8) actions, "narrow" (chunk, 4), "text" a traceback text frame, then
    closes (code 1011), as openpi's server does on an exception.
    """

    chunk = CHUNK

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict] = []
        self.headers: list = []
        self._server = serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def actions(self, width: int) -> np.ndarray:
        return (np.arange(self.chunk * width, dtype=np.float32).reshape(self.chunk, width) - 7) / 100

    def reset(self) -> None:
        self.mode = "ok"
        self.requests.clear()
        self.headers.clear()

    def _handler(self, ws) -> None:
        self.headers.append(ws.request.headers)
        ws.send(openpi_packb({}))
        for frame in ws:
            self.requests.append(openpi_unpackb(frame))
            if self.mode == "text":
                ws.send("Traceback (most recent call last):\nValueError: boom in the policy")
                ws.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                return
            width = 4 if self.mode == "narrow" else 8
            ws.send(openpi_packb({"actions": self.actions(width), "server_timing": {"infer_ms": 1.0}}))

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def _standin():
    s = OpenpiStandIn()
    yield s
    s.close()


@pytest.fixture
def standin(_standin):
    _standin.reset()
    return _standin


def _robot_obs(seed: int) -> dict:
    """A robot's observation dict: joints (listed in reverse order) and two 480x640 camera frames."""
    rng = np.random.default_rng(seed)
    obs: dict = {name: 1.5 * i - 2.0 for i, name in reversed(list(enumerate(JOINTS)))}
    obs["front"] = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    obs["wrist"] = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return obs


def _openpi_policy(standin: OpenpiStandIn, **kw) -> OpenpiPolicy:
    return OpenpiPolicy(
        f"openpi://127.0.0.1:{standin.port}",
        obs_map=parse_obs_map(OBS_MAP),
        action_names=JOINTS,
        state_names=JOINTS,
        image_size=(224, 224),
        **kw,
    )


def test_openpi_policy_sends_openpi_observations(standin):
    policy = _openpi_policy(standin, token="tok")
    try:
        robot_obs = _robot_obs(0)
        msg = policy.observation_builder("pick the cube").convert(robot_obs)
        actions = policy.predict(msg)
    finally:
        policy.close()
    assert actions.shape == (1, CHUNK, 6) and actions.dtype == np.float32
    np.testing.assert_array_equal(actions[0], standin.actions(8)[:, :6])
    assert policy.chunk_size == CHUNK

    assert len(standin.headers) == 1
    assert standin.headers[0].get("Authorization") == "Api-Key tok"
    assert standin.headers[0].get("X-Jrobot-Protocol") is None  # an openpi client announces nothing
    (req,) = standin.requests
    assert set(req) == {"observation/image", "observation/wrist_image", "observation/state", "prompt"}
    assert req["prompt"] == "pick the cube"
    for key, cam in (("observation/image", "front"), ("observation/wrist_image", "wrist")):
        img = req[key]
        assert img.dtype == np.uint8 and img.shape == (224, 224, 3)
        np.testing.assert_array_equal(img, openpi_resize_with_pad(robot_obs[cam], 224, 224))
        assert not img[:28].any() and not img[-28:].any() and img[28:-28].any()  # 168 rows, centred
    state = req["observation/state"]
    assert state.dtype == np.float32
    np.testing.assert_array_equal(state, np.float32([1.5 * i - 2.0 for i in range(6)]))


def test_openpi_observations_nested(standin):
    obs = OpenpiObservations(
        parse_obs_map(OBS_MAP), state_names=JOINTS, image_size=(224, 224), nested=True, task="stack"
    )
    robot_obs = _robot_obs(1)
    msg = obs.convert(robot_obs)
    assert set(msg) == {"observation", "prompt"} and msg["prompt"] == "stack"
    assert set(msg["observation"]) == {"image", "wrist_image", "state"}
    policy = _openpi_policy(standin, nested=True)
    try:
        policy.predict(msg)
    finally:
        policy.close()
    (req,) = standin.requests
    assert set(req) == {"observation", "prompt"}
    np.testing.assert_array_equal(
        req["observation"]["image"], openpi_resize_with_pad(robot_obs["front"], 224, 224)
    )
    np.testing.assert_array_equal(req["observation"]["state"], np.float32([1.5 * i - 2.0 for i in range(6)]))


def test_openpi_policy_refuses_actions_too_narrow_for_the_robot(standin):
    standin.mode = "narrow"
    policy = _openpi_policy(standin)
    try:
        msg = policy.observation_builder().convert(_robot_obs(2))
        with pytest.raises(RemotePolicyError, match=r"\b4 wide.*\b6 joints"):
            policy.predict(msg)
    finally:
        policy.close()


def test_openpi_policy_raises_the_server_error_text(standin):
    standin.mode = "text"
    policy = _openpi_policy(standin)
    try:
        msg = policy.observation_builder().convert(_robot_obs(3))
        with pytest.raises(RemotePolicyError, match="boom in the policy"):
            policy.predict(msg)
    finally:
        policy.close()


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jrobot.run", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def test_run_drives_the_sim_from_an_openpi_server(standin, tmp_path):
    report = tmp_path / "report.json"
    proc = _run(
        f"--policy=openpi://127.0.0.1:{standin.port}",
        "--robot.type=sim",
        "--robot.image_size=[48,64]",
        "--max_steps=20",
        f"--remote.obs_map={OBS_MAP}",
        "--task",
        "pick the cube",
        f"--report={report}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(report.read_text())["steps"] == 20
    assert standin.requests
    for req in standin.requests:
        assert req["prompt"] == "pick the cube"
        for key in ("observation/image", "observation/wrist_image"):
            assert req[key].shape == (224, 224, 3) and req[key].dtype == np.uint8
        assert req["observation/state"].shape == (6,) and req["observation/state"].dtype == np.float32


def test_run_offline_against_an_openpi_server(standin, tmp_path):
    rng = np.random.default_rng(4)
    state = rng.normal(size=(3, 6)).astype(np.float32)
    front = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    np.savez(tmp_path / "in.npz", **{STATE: state, FRONT: front})
    out = tmp_path / "out.npz"
    proc = _run(
        f"--policy=openpi://127.0.0.1:{standin.port}",
        f"--remote.obs_map=observation/image={FRONT},observation/state={STATE}",
        f"--observations={tmp_path / 'in.npz'}",
        f"--out={out}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out) as z:
        action = z["action"]
    assert action.shape == (3, CHUNK, 8)  # no robot: not cut
    np.testing.assert_array_equal(action, np.broadcast_to(standin.actions(8), (3, CHUNK, 8)))
    assert len(standin.requests) == 3
    for b, req in enumerate(standin.requests):
        np.testing.assert_array_equal(req["observation/state"], state[b])
        np.testing.assert_array_equal(req["observation/image"], openpi_resize_with_pad(front[b], 224, 224))


def test_run_refuses_a_bad_obs_map(tmp_path):
    np.savez(tmp_path / "in.npz", **{STATE: np.zeros((1, 6), np.float32)})
    proc = _run(
        "--policy=openpi://127.0.0.1:9",
        "--remote.obs_map=foo",
        f"--observations={tmp_path / 'in.npz'}",
        f"--out={tmp_path / 'out.npz'}",
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--remote.obs_map" in errors[0], proc.stderr

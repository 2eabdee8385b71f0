"""`jrobot.serve` and its jrobot client, in separate processes on 127.0.0.1, with the simulated arm.

A served policy must act exactly as the local one, and everything that goes wrong on a network must
leave the arm safe (holding, then stopped with torque off) and the server serving its other clients.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
import websockets
from serve_helpers import REPO, serving
from websockets.sync.client import connect

from jrobot.runtime.loop import PolicyController, run_episode
from jrobot.runtime.policy import BundlePolicy
from jrobot.serving.client import RemotePolicy, RemotePolicyError
from jrobot.serving.wire import decode_map, encode
from jrobot.sim.robot import SimRobot, SimRobotConfig

RNG = np.random.default_rng(0)


def _obs(batch: int | None, hw=(96, 128)) -> dict[str, np.ndarray]:
    lead = () if batch is None else (batch,)
    return {
        "observation.state": RNG.normal(size=(*lead, 6)).astype(np.float32),
        "observation.images.front": RNG.integers(0, 256, (*lead, *hw, 3), dtype=np.uint8),
        "observation.images.wrist": RNG.integers(0, 256, (*lead, *hw, 3), dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def server(act_bundle):
    with serving(act_bundle, "--max_message_mb=2") as s:
        yield s


def _raw(url: str, **kw):
    ws = connect(url, compression=None, proxy=None, open_timeout=10, **kw)
    metadata = decode_map(ws.recv(timeout=10))
    return ws, metadata


def _alive(url: str) -> None:
    """The server still answers a good request on a fresh connection."""
    ws, _ = _raw(url)
    with ws:
        ws.send(encode(_obs(None)))
        reply = ws.recv(timeout=30)
        assert not isinstance(reply, str), reply
        assert decode_map(reply)["actions"].shape == (10, 6)


def _drive(policy, steps: int, seed: int = 3) -> np.ndarray:
    robot = SimRobot(SimRobotConfig(image_size=(96, 128), seed=seed))
    robot.connect()
    robot.reset(seed=seed)
    sent = []
    controller = PolicyController(policy, mode="sync", timeout_s=getattr(policy, "timeout_s", None))
    try:
        controller.reset()
        policy.seed(seed)
        run_episode(
            robot, controller, fps=30, max_steps=steps, realtime=False, on_step=lambda o, a: sent.append(a)
        )
    finally:
        controller.close()
        robot.disconnect()
    return np.asarray([[a[n] for n in controller.action_names] for a in sent])


def test_a_served_episode_gives_the_actions_of_local_inference(server, act_bundle):
    local = BundlePolicy(act_bundle)
    remote = RemotePolicy(server.url)
    try:
        assert remote.info.to_json() == local.info.to_json()  # the bundle's description travels whole
        assert remote.metadata["policy_type"] == "act" and remote.metadata["chunk_size"] == 10
        want = _drive(local, 25)
        got = _drive(remote, 25)
    finally:
        remote.close()
    assert got.shape == (25, 6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert len(remote.server_infer_ms) >= 3  # one chunk per 10 steps, each with the server's timing


def test_offline_mode_through_a_server_equals_local(server, act_bundle, tmp_path):
    obs = _obs(3)
    for cam in ("front", "wrist"):  # LeRobot's layout: CHW float in [0, 1]
        key = f"observation.images.{cam}"
        obs[key] = obs[key].transpose(0, 3, 1, 2) / np.float32(255)
    np.savez(tmp_path / "in.npz", **obs)
    outs = {}
    for name, policy in (("local", str(act_bundle)), ("remote", server.url)):
        out = tmp_path / f"{name}.npz"
        subprocess.run(
            [sys.executable, "-m", "jrobot.run", f"--policy={policy}", f"--observations={tmp_path / 'in.npz'}",
             f"--out={out}"],
            check=True, capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        outs[name] = np.load(out)["action"]
    assert outs["remote"].shape == (3, 10, 6)
    np.testing.assert_allclose(outs["remote"], outs["local"], atol=1e-5)


def test_a_stochastic_policy_is_seeded_per_connection_like_local_inference(diffusion_bundle):
    local = BundlePolicy(diffusion_bundle)
    obs = {k: v for k, v in _obs(2).items()}
    spec = local.spec
    for k in list(obs):
        if k not in spec.input_features:
            del obs[k]
    h, w, _ = local.info.image_shapes["observation.images.front"]
    obs = {k: (v if not k.startswith("observation.images") else RNG.integers(0, 256, (2, h, w, 3), np.uint8))
           for k, v in obs.items()}  # fmt: skip
    local.seed(7)
    want = [local.predict(obs), local.predict(obs)]
    with serving(diffusion_bundle) as s:
        a, b = RemotePolicy(s.url), RemotePolicy(s.url)
        try:
            b.seed(99)
            b.predict(obs)  # another client's draws do not disturb this one's
            a.seed(7)
            got = [a.predict(obs), a.predict(obs)]
        finally:
            a.close()
            b.close()
    for g, w_ in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w_, atol=1e-5)
    assert not np.allclose(got[0], got[1])  # the key advances per call, as locally


def test_health_check_metadata_and_protocol_version(server):
    assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10).status == 200
    with pytest.raises(websockets.InvalidStatus) as e:
        connect(server.url, additional_headers={"X-Jrobot-Protocol": "99"}, proxy=None)
    assert e.value.response.status_code == 400
    assert b"version 1" in e.value.response.body and b"version 99" in e.value.response.body


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b"\xc1\xc1\xc1", "not a valid msgpack frame"),
        (msgpack.packb({"observation.state": [1, 2]})[:5], "not a valid msgpack frame"),
        (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
        ("hello", "text frames are not requests"),
        (encode({"observation.state": np.zeros(6, np.float32)}), "lacks 'observation.images.front'"),
        (encode({**_obs(None), "observation.state": np.zeros(4, np.float32)}), "feature shape (6,)"),
        (encode({**_obs(None), "observation.images.front": np.zeros((8, 8), np.uint8)}), "expected an image"),
        (encode({**_obs(None), "observation.images.front": np.zeros((8, 8, 3), np.int64)}), "uint8 or float"),
        (encode({**_obs(None), "observation.state": np.full(6, np.nan, np.float32)}), "NaN"),
        (encode({**_obs(None), "observation.state": "six"}), "expected a numpy array"),
        (encode(_obs(9)), "over this server's limit of 8"),
        (encode({"__ctrl__": "episode_start", "__seed__": -1}), "__seed__ must be an integer"),
    ],
)
def test_bad_requests_get_a_text_frame_and_the_connection_keeps_serving(server, frame, words):
    ws, _ = _raw(server.url)
    with ws:
        ws.send(frame)
        reply = ws.recv(timeout=30)
        assert isinstance(reply, str) and words in reply, reply
        ws.send(encode(_obs(None)))  # the same connection, a good request
        assert decode_map(ws.recv(timeout=30))["actions"].shape == (10, 6)


def test_out_of_order_timesteps_are_refused_until_a_new_episode(server):
    ws, _ = _raw(server.url)
    with ws:
        for t, ok in ((5, True), (6, True), (6, False), (2, False)):
            ws.send(encode({**_obs(None), "__timestep__": t}))
            reply = ws.recv(timeout=30)
            if ok:
                assert decode_map(reply)["timestep"] == t
            else:
                assert isinstance(reply, str) and f"timestep {t} after 6" in reply
        ws.send(encode({"__ctrl__": "episode_start"}))
        assert decode_map(ws.recv(timeout=30)) == {"__ack__": "episode_start"}
        ws.send(encode({**_obs(None), "__timestep__": 0}))
        assert decode_map(ws.recv(timeout=30))["timestep"] == 0


def test_an_oversized_message_closes_only_that_connection(server):
    ws, _ = _raw(server.url, max_size=None)
    big = {**_obs(None), "observation.images.front": np.zeros((1024, 1024, 3), np.uint8)}  # 3 MB > 2 MB
    with ws, pytest.raises(websockets.ConnectionClosed) as e:
        ws.send(encode(big))
        ws.recv(timeout=30)
    assert e.value.rcvd.code == 1009
    _alive(server.url)


def test_the_server_survives_clients_that_vanish_mid_request(act_bundle):
    with serving(act_bundle, "--min_latency_ms=400") as s:
        for _ in range(3):
            raw, _ = _raw(s.url)
            raw.send(encode(_obs(None)))
            raw.socket.close()  # gone before the reply, without a closing handshake
        time.sleep(1.5)  # the replies were due meanwhile
        _alive(s.url)
        assert s.proc.poll() is None
        assert "Traceback" not in s.log


def test_concurrent_clients_are_batched_into_one_call(act_bundle):
    local = BundlePolicy(act_bundle)
    with serving(act_bundle, "--min_latency_ms=600") as s:
        clients = [_raw(s.url)[0] for _ in range(4)]
        obs = [_obs(None) for _ in clients]
        for ws in clients:  # compile the batch sizes first (a fresh shape costs a compile)
            ws.send(encode(obs[0]))
        for ws in clients:
            ws.recv(timeout=60)
        replies: list = [None] * 4
        t0 = time.perf_counter()

        def ask(i):
            clients[i].send(encode(obs[i]))
            replies[i] = (decode_map(clients[i].recv(timeout=60)), time.perf_counter() - t0)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for ws in clients:
            ws.close()
    # The four are sent at once and every call takes at least 600 ms: whatever reaches the idle engine
    # first runs (alone or with others), the rest arrive while it runs and share the next call. So at
    # most two calls serve the four ([1, 3], [2, 2] or [4], as the machine's load orders them); served
    # one by one they would take four. Each reply says how many requests its call served.
    sizes = sorted(r[0]["server_timing"]["batch_requests"] for r in replies)
    calls = sum(1 / n for n in sizes)
    assert round(calls) <= 2 and max(sizes) >= 2, f"not batched: calls served {sizes}"
    for i, (reply, _) in enumerate(replies):
        want = local.predict({k: v[None] for k, v in obs[i].items()})[0]
        # batched matmuls round differently from single ones (a few float32 ulps of actions ~20 deg)
        np.testing.assert_allclose(reply["actions"], want, rtol=1e-5, atol=1e-5)


def test_token_is_checked_at_the_handshake(act_bundle, tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    with serving(act_bundle, f"--token_file={tmp_path / 'token'}") as s:
        for headers, status in ((None, 401), ({"Authorization": "Api-Key nope"}, 403)):
            with pytest.raises(websockets.InvalidStatus) as e:
                connect(s.url, additional_headers=headers, proxy=None)
            assert e.value.response.status_code == status
        with pytest.raises(RemotePolicyError, match="needs a token"):
            RemotePolicy(s.url)
        with pytest.raises(RemotePolicyError, match="refused the token"):
            RemotePolicy(s.url, token="nope")
        policy = RemotePolicy(s.url, token="s3cret")
        assert policy.predict({k: v[None] for k, v in _obs(None).items()}).shape == (1, 10, 6)
        policy.close()
        assert "s3cret" not in s.log


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(act_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.serve", f"--policy={act_bundle}", "--host=0.0.0.0", "--port=0"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "--token_file" in proc.stderr and "Traceback" not in proc.stderr


def _run_cmd(url: str, tmp_path: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "jrobot.run", f"--policy={url}", "--robot.type=sim", "--robot.image_size=[96, 128]",
        "--realtime=true", f"--report={tmp_path / 'report.json'}", *flags,
    ]  # fmt: skip


def _start_client(url: str, tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """`jrobot.run` against `url`, its stderr (the log) in a file the test can watch while it runs."""
    err_path = tmp_path / "client.log"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            _run_cmd(url, tmp_path, *flags), stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO
        )
    return proc, err_path


def _finish(proc: subprocess.Popen, err_path: Path, timeout_s: float) -> str:
    proc.communicate(timeout=timeout_s)
    return err_path.read_text()


def _wait_for_a_client(proc, err_path: Path, settle_s: float = 2.0, timeout_s: float = 90.0) -> None:
    """Until the run's arm moves on the policy's actions (its first chunk came back), then `settle_s`
    more of control: a loaded machine takes longer to import, connect and compile than any sleep."""
    deadline = time.monotonic() + timeout_s
    while "first action from the policy" not in err_path.read_text():
        assert proc.poll() is None, err_path.read_text()
        assert time.monotonic() < deadline, f"no first action in {timeout_s} s:\n{err_path.read_text()}"
        time.sleep(0.1)
    time.sleep(settle_s)
    assert proc.poll() is None, err_path.read_text()


def test_killing_the_server_makes_the_arm_hold_then_stop_within_the_timeout(act_bundle, tmp_path):
    with serving(act_bundle) as s:
        proc, err_path = _start_client(
            s.url, tmp_path, "--max_steps=3000", "--remote.timeout_s=1.5",
            f"--dataset.root={tmp_path / 'rec'}", "--dataset.single_task=pick",
        )  # fmt: skip
        _wait_for_a_client(proc, err_path)  # the client imports, connects and runs a few seconds
        s.kill()
        t_kill = time.monotonic()
        err = _finish(proc, err_path, 60)
        stopped_after = time.monotonic() - t_kill
    assert proc.returncode == 1, err
    assert stopped_after < 1.5 + 5, stopped_after  # the timeout, plus closing the recording
    assert "no fresh action for 1.5 s" in err and "Traceback" not in err
    rep = json.loads((tmp_path / "report.json").read_text())
    held = rep["ticks_without_fresh_action"]
    assert "stopped" in rep and held >= 15  # ~45 ticks at 30 fps (fewer on a loaded machine)
    # the recording was kept, and while holding the arm was sent its last safe position, unchanged
    import pyarrow.parquet as pq

    (data,) = (tmp_path / "rec" / "data").rglob("*.parquet")
    actions = np.stack(pq.read_table(data).column("action").to_numpy(zero_copy_only=False))
    assert len(actions) == rep["steps"]
    # the count is over the whole run (a loaded machine also starves a few ticks before the kill), so
    # the final hold is the trailing run of rows equal to the last one
    same = np.all(actions == actions[-1], axis=1)
    final_hold = int(np.argmin(same[::-1])) - 1 if not same.all() else len(same) - 1
    assert 15 <= final_hold <= held, (final_hold, held)


def test_a_server_killed_before_the_first_chunk_stops_the_run_at_once(act_bundle, tmp_path):
    # the server holds every answer 20 s: the client is connected and waiting for its first chunk
    with serving(act_bundle, "--min_latency_ms=20000") as s:
        proc, err_path = _start_client(s.url, tmp_path, "--max_steps=300", "--remote.timeout_s=1.5")
        deadline = time.monotonic() + 90
        while "connected" not in s.log:
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        time.sleep(1.0)
        s.kill()
        t_kill = time.monotonic()
        err = _finish(proc, err_path, 60)
        stopped_after = time.monotonic() - t_kill
    # reconnecting is off, so the lost connection cannot come back: no 60 s wait for a first chunk
    assert proc.returncode == 1 and "the policy is gone" in err and "Traceback" not in err, err[-2000:]
    assert stopped_after < 10, stopped_after
    assert "first action" not in err  # the arm never moved


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_restarted_server_is_reconnected_to(act_bundle, tmp_path):
    port = _free_port()
    with serving(act_bundle, port=port) as first:
        proc, err_path = _start_client(
            first.url, tmp_path, "--max_steps=900", "--remote.timeout_s=60", "--remote.reconnect=true"
        )
        _wait_for_a_client(proc, err_path)
        first.kill()
    with serving(act_bundle, port=port):
        err = _finish(proc, err_path, 120)
    assert proc.returncode == 0, err
    assert "reconnected" in err
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["steps"] == 900 and rep["hold_gaps"] >= 1 and rep["ticks_without_fresh_action"] > 0
    assert "stopped" not in rep


def test_a_server_of_another_protocol_version_is_refused_by_the_client():
    from websockets.sync.server import serve

    def handler(ws):
        ws.send(encode({"protocol": "jrobot-serve", "protocol_version": 99}))
        time.sleep(0.5)

    with serve(handler, "127.0.0.1", 0) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port = srv.socket.getsockname()[1]
        with pytest.raises(RemotePolicyError, match="version 99, this client version 1"):
            RemotePolicy(f"ws://127.0.0.1:{port}")
        srv.shutdown()


def test_a_missing_server_is_a_clear_connection_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.run", f"--policy=ws://127.0.0.1:{_free_port()}", "--robot.type=sim"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "cannot connect" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_runs_against_a_server_as_against_the_bundle(server, act_bundle, tmp_path):
    reports = {}
    for name, policy in (("local", str(act_bundle)), ("remote", server.url)):
        subprocess.run(
            [sys.executable, "-m", "jrobot.eval", f"--policy={policy}", "--episodes=2", "--max-steps=15",
             "--videos=false", f"--out={tmp_path / name}"],
            check=True, capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    strip = lambda r: [(e["seed"], e["success"], e["steps"]) for e in r["episodes"]]  # noqa: E731
    assert strip(reports["remote"]) == strip(reports["local"])
    assert (
        reports["remote"]["latency"]["inference_calls"] == reports["local"]["latency"]["inference_calls"] >= 4
    )


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--prot=1"], 2, "unknown flag --prot; did you mean --port?"),
        (["--device=tpu"], 2, "--device must be auto, cpu or gpu"),
        (["--token_file=/nonexistent/token"], 2, "--token_file /nonexistent/token: cannot read it"),
    ],
)
def test_serve_answers_mistakes_in_one_line(act_bundle, args, code, words):
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.serve", f"--policy={act_bundle}", "--port=0", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == code and words in proc.stderr.splitlines()[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_names_a_folder_that_is_not_a_bundle(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.serve", f"--policy={tmp_path}", "--port=0"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr and "no policy.json" in proc.stderr


def test_a_served_vla_follows_the_prompt_exactly_as_local_inference(vla_bundle):
    local = BundlePolicy(vla_bundle)
    # two rows that differ only in their instruction
    obs = {
        k: RNG.integers(0, 256, (1, *hwc), np.uint8).repeat(2, 0)
        for k, hwc in local.info.image_shapes.items()
    }
    obs["observation.state"] = RNG.normal(size=(1, 6)).astype(np.float32).repeat(2, 0)
    noise = RNG.normal(size=(1, *local.spec.noise_shape)).astype(np.float32).repeat(2, 0)
    tasks = [
        "pick the red cube",
        "stack everything on the left",
    ]  # (the fixture's tiny vocabulary has no colours)
    want = local.predict(obs, task=tasks, noise=noise)
    with serving(vla_bundle) as s:
        ws, metadata = _raw(s.url)
        assert metadata["needs_task"] is True
        with ws:
            for i, task in enumerate(tasks):  # as openpi clients send: unbatched, the instruction as `prompt`
                ws.send(encode({**{k: v[i] for k, v in obs.items()}, "prompt": task, "noise": noise[i]}))
                np.testing.assert_allclose(decode_map(ws.recv(timeout=120))["actions"], want[i], atol=1e-5)
            ws.send(encode({k: v[0] for k, v in obs.items()}))
            reply = ws.recv(timeout=60)
            assert isinstance(reply, str) and "send it as 'prompt'" in reply
        remote = RemotePolicy(s.url)  # jrobot's client: batched, `task` strings per row
        try:
            np.testing.assert_allclose(remote.predict(obs, task=tasks, noise=noise), want, atol=1e-5)
        finally:
            remote.close()
    assert not np.allclose(want[0], want[1], atol=1e-4)  # the instruction alone changes the actions

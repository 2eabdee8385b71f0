"""Remote policies the runtime's controller drives like a local bundle (no jax in this module).

    RemotePolicy("ws://gpu-box:8000", token=...)   a bundle served by `jrobot.serve`
    OpenpiPolicy("openpi://gpu-box:8000", obs_map=..., action_names=...)   any openpi policy server

Both send one observation per request and return (1, chunk, A) actions, as `BundlePolicy.predict`
does. Network trouble is `PolicyUnavailable` (the controller holds the arm and retries until its
timeout; with `reconnect`, a dropped connection is reopened on the next request); a request the server
refuses (its text error frame), a server of another protocol version, a wrong token or a reply that
does not fit the robot are `RemotePolicyError`, raised at once: the arm never moves on them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.sync.client import ClientConnection, connect

from jrobot.bundle import BundleError, BundleInfo
from jrobot.features import IMAGE_PREFIX, STATE_KEY
from jrobot.runtime.errors import PolicyGone, PolicyUnavailable
from jrobot.runtime.observations import TASK_KEY, TIMESTEP_KEY, DescribedByBundle
from jrobot.serving import protocol as P
from jrobot.serving.wire import WireError, decode_map, encode

log = logging.getLogger("jrobot.serving")

SCHEMES = ("ws", "wss", "openpi")


class RemotePolicyError(RuntimeError):
    """The server refused us or answered something unusable; retrying would not help."""


def is_remote(policy: str) -> bool:
    """Whether a --policy value names a server (ws://, wss://, openpi://) rather than a bundle folder."""
    return urlsplit(str(policy)).scheme in SCHEMES


def websocket_uri(url: str) -> str:
    """ws://HOST:PORT as websockets wants it (openpi:// is plain ws://, openpis:// is not a thing)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(
            f"--policy {url!r}: a server address looks like ws://HOST:PORT or openpi://HOST:PORT"
        )
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"--policy {url!r}: bad port ({e})") from e
    scheme = "ws" if parts.scheme == "openpi" else parts.scheme
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or P.DEFAULT_PORT}{parts.path or ''}"


class Connection:
    """One websocket to a policy server: handshake, metadata, then request -> reply, in order.

    Thread-safety: one request at a time (the controller's worker thread); `close` from any thread
    unblocks a request waiting for its reply.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        jrobot_client: bool = True,
        open_timeout_s: float = 5.0,
        max_message_bytes: int = int(P.DEFAULT_MAX_MESSAGE_MB * 2**20),
    ) -> None:
        self.url = url
        self.uri = websocket_uri(url)
        self.token = token
        self.jrobot_client = jrobot_client
        self.open_timeout_s = open_timeout_s
        self.max_message_bytes = max_message_bytes
        self._ws: ClientConnection | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._ws is not None

    def open(self) -> dict[str, Any]:
        """Connect and return the server's metadata map; `PolicyUnavailable` if nobody answers."""
        headers = dict(P.auth_header(self.token)) if self.token else {}
        if self.jrobot_client:
            headers[P.VERSION_HEADER] = str(P.PROTOCOL_VERSION)
        try:
            ws = connect(
                self.uri,
                additional_headers=headers or None,
                compression=None,
                max_size=self.max_message_bytes,
                open_timeout=self.open_timeout_s,
                proxy=None,
                close_timeout=1.0,
            )
        except websockets.InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode("utf-8", "replace").strip() if e.response.body else ""
            what = {401: "needs a token (--token_file)", 403: "refused the token"}.get(
                status, f"said {status}"
            )
            raise RemotePolicyError(f"{self.url}: the server {what}" + (f": {body}" if body else "")) from e
        except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
            raise PolicyUnavailable(f"{self.url}: cannot connect ({e})") from e
        try:
            frame = ws.recv(timeout=self.open_timeout_s)
            if isinstance(frame, str):
                raise RemotePolicyError(
                    f"{self.url}: the server sent an error instead of its metadata: {frame}"
                )
            metadata = decode_map(frame, "the server's metadata")
        except (TimeoutError, websockets.ConnectionClosed) as e:
            ws.close()
            raise PolicyUnavailable(f"{self.url}: no metadata from the server ({e})") from e
        except WireError as e:
            ws.close()
            raise RemotePolicyError(f"{self.url}: unreadable metadata ({e})") from e
        self._ws = ws
        return metadata

    def request(self, message: Mapping[str, Any], timeout_s: float | None) -> dict[str, Any]:
        """Send one map, return the reply map. Text frames (the server's errors) are `RemotePolicyError`."""
        ws = self._ws
        if ws is None:
            raise PolicyUnavailable(f"{self.url}: not connected")
        try:
            frame = encode(message)
        except WireError as e:
            raise RemotePolicyError(f"cannot send the observation: {e}") from e
        with self._lock:
            try:
                ws.send(frame)
                reply = ws.recv(timeout=timeout_s)
            except TimeoutError as e:
                self._drop()  # a late reply would answer the next request: start over
                raise PolicyUnavailable(f"{self.url}: no reply within {timeout_s:g} s") from e
            except websockets.ConnectionClosed as e:
                self._drop()
                if e.rcvd is not None and e.rcvd.code == 1009:
                    raise RemotePolicyError(
                        f"{self.url}: the server refused the message: {e.rcvd.reason}"
                    ) from e
                raise PolicyUnavailable(f"{self.url}: connection lost ({e})") from e
            except OSError as e:
                self._drop()
                raise PolicyUnavailable(f"{self.url}: connection lost ({e})") from e
        if isinstance(reply, str):
            raise RemotePolicyError(f"{self.url}: {reply.removeprefix('error: ')}")
        try:
            return decode_map(reply, "the server's reply")
        except WireError as e:
            raise RemotePolicyError(f"{self.url}: {e}") from e

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def close(self) -> None:
        self._drop()


class _Reconnecting:
    """A connection reopened on demand (with a pause between attempts) when `reconnect` is set."""

    retry_every_s = 0.5
    # how long one reply may take before the connection is given up: generous, as a server compiles its
    # policy for each new input shape; the controller's own timeout (holding the arm) is much shorter
    reply_timeout_s = 60.0

    def __init__(self, connection: Connection, *, reconnect: bool, timeout_s: float) -> None:
        self.connection = connection
        self.reconnect = reconnect
        self.timeout_s = timeout_s
        self.reply_timeout_s = max(self.reply_timeout_s, timeout_s)
        self.server_infer_ms: list[float] = []
        self._ever_open = False
        self._next_attempt = 0.0
        self._lost_logged = False

    def _metadata_checked(self, metadata: dict[str, Any]) -> None:
        """Check a (re)connection's metadata; subclasses refuse what does not fit."""

    def ensure_open(self) -> None:
        c = self.connection
        if c.is_open:
            return
        if self._ever_open and not self.reconnect:
            raise PolicyGone(f"{c.url}: connection lost (reconnecting is off; --remote.reconnect=true)")
        now = time.monotonic()
        if now < self._next_attempt:
            raise PolicyUnavailable(f"{c.url}: connection lost; reconnecting")
        self._next_attempt = now + self.retry_every_s
        metadata = c.open()
        self._metadata_checked(metadata)
        if self._ever_open:
            log.warning("%s: reconnected", c.url)
        self._ever_open = True
        self._lost_logged = False
        self._on_open()

    def _on_open(self) -> None:
        """After each (re)connection."""

    def call(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self.ensure_open()
        try:
            reply = self.connection.request(message, self.reply_timeout_s)
        except PolicyUnavailable:
            if not self._lost_logged:
                log.warning("%s: the server went away", self.connection.url)
                self._lost_logged = True
            raise
        timing = reply.get("server_timing")
        if isinstance(timing, dict) and isinstance(timing.get("infer_ms"), int | float):
            self.server_infer_ms.append(float(timing["infer_ms"]))
        return reply

    def close(self) -> None:
        self.connection.close()


def _actions(reply: Mapping[str, Any], url: str, batch: int) -> np.ndarray:
    """The reply's `actions` as (B, chunk, A) float32, checked."""
    if "actions" not in reply:
        raise RemotePolicyError(f"{url}: the reply has no 'actions' (keys {sorted(reply)})")
    a = reply["actions"]
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
        raise RemotePolicyError(f"{url}: 'actions' is not a numeric array ({type(a).__name__})")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] != batch or a.shape[1] < 1:
        raise RemotePolicyError(f"{url}: 'actions' has shape {list(a.shape)}, expected (chunk, action_dim)")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise RemotePolicyError(f"{url}: the server's actions contain NaN or infinite values")
    return a


class RemotePolicy(DescribedByBundle, _Reconnecting):
    """A bundle served by `jrobot.serve`: described by the policy.json the server sends on connect."""

    def __init__(
        self, url: str, *, token: str | None = None, timeout_s: float = 2.0, reconnect: bool = False
    ) -> None:
        _Reconnecting.__init__(self, Connection(url, token=token), reconnect=reconnect, timeout_s=timeout_s)
        self.url = url
        self.latencies_s: list[float] = []
        self._seed: int | None = None
        self.metadata: dict[str, Any] = {}
        self.ensure_open()

    def _metadata_checked(self, metadata: dict[str, Any]) -> None:
        proto, version = metadata.get("protocol"), metadata.get("protocol_version")
        if proto != P.PROTOCOL:
            raise RemotePolicyError(
                f"{self.url}: not a jrobot policy server (metadata protocol {proto!r}); for openpi servers "
                f"use --policy openpi://{urlsplit(self.url).netloc}"
            )
        if version != P.PROTOCOL_VERSION:
            raise RemotePolicyError(
                f"{self.url}: the server speaks {P.PROTOCOL} version {version}, this client version "
                f"{P.PROTOCOL_VERSION}; use the same jrobot on both machines"
            )
        try:
            info = BundleInfo.from_json(metadata["policy"], path=self.url)
        except (KeyError, TypeError, BundleError) as e:
            raise RemotePolicyError(f"{self.url}: the server's policy description is unreadable ({e})") from e
        if self.metadata and info.to_json() != self.info.to_json():
            raise RemotePolicyError(f"{self.url}: after reconnecting, the server serves a different policy")
        self.metadata = metadata
        self.info = info

    def _on_open(self) -> None:
        if self._seed is not None:  # a new connection starts a new server-side session
            self.connection.request(
                {P.CTRL_KEY: "episode_start", P.SEED_KEY: self._seed}, self.reply_timeout_s
            )

    def seed(self, seed: int) -> None:
        """Seed the server-side noise of a stochastic policy; also starts a new episode (timesteps from 0)."""
        self._seed = int(seed) % 2**32
        try:
            self.call({P.CTRL_KEY: "episode_start", P.SEED_KEY: self._seed})
        except PolicyUnavailable as e:
            log.warning("%s", e)  # the next request reconnects (which seeds) or the controller gives up

    def warmup(self, batch: int = 1) -> None:
        """Nothing to compile here: the server warmed its policy up when it started."""

    def predict(
        self,
        observation: Mapping[str, Any],
        *,
        task: str | Sequence[str] | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """(B, chunk, A) actions for a batch of observations keyed by feature name, as local inference."""
        msg: dict[str, Any] = {}
        for key, value in observation.items():
            if key == TASK_KEY:
                msg[key] = value if isinstance(value, str) else [str(t) for t in value]
            elif key == TIMESTEP_KEY:
                msg[key] = int(value)
            else:
                msg[key] = np.asarray(value)
        if task is not None and TASK_KEY not in msg:
            msg[TASK_KEY] = task if isinstance(task, str) else [str(t) for t in task]
        if noise is not None:
            msg[P.NOISE_KEY] = np.asarray(noise, np.float32)
        batch = _batch_size(msg)
        t0 = time.perf_counter()
        reply = self.call(msg)
        out = _actions(reply, self.url, batch)
        self.latencies_s.append(time.perf_counter() - t0)
        if out.shape[2] != len(self.action_names):
            raise RemotePolicyError(
                f"{self.url}: actions of width {out.shape[2]}, the policy has {len(self.action_names)} joints"
            )
        return out


def _batch_size(msg: Mapping[str, Any]) -> int:
    for key, value in msg.items():
        if key in (STATE_KEY,) or key.startswith(IMAGE_PREFIX):
            return int(np.asarray(value).shape[0])
    return 1


# -- openpi servers --------------------------------------------------------------------------------


def resize_with_pad(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi-client's `image_tools.resize_with_pad`: keep the aspect ratio (bilinear, PIL), pad with black.

    (..., H, W, 3) uint8 -> (..., height, width, 3); the image sits in the middle, as tf.image's does.
    """
    from PIL import Image

    images = np.asarray(images)
    if images.shape[-3:-1] == (height, width):
        return images
    flat = images.reshape(-1, *images.shape[-3:])
    out = np.zeros((len(flat), height, width, images.shape[-1]), np.uint8)
    for i, img in enumerate(flat):
        h, w = img.shape[:2]
        ratio = max(w / width, h / height)
        rh, rw = int(h / ratio), int(w / ratio)
        resized = np.asarray(Image.fromarray(img).resize((rw, rh), resample=Image.BILINEAR))
        top, left = max(0, int((height - rh) / 2)), max(0, int((width - rw) / 2))
        out[i, top : top + rh, left : left + rw] = resized
    return out.reshape(*images.shape[:-3], height, width, images.shape[-1])


def to_uint8_hwc(img: np.ndarray) -> np.ndarray:
    """A camera frame or an offline-layout image (CHW float in [0, 1]) as HWC uint8, as openpi sends."""
    img = np.asarray(img)
    if img.shape[-1] != 3 and img.ndim >= 3 and img.shape[-3] == 3:
        img = np.moveaxis(img, -3, -1)
    if img.dtype.kind == "f":
        img = (255 * np.clip(img, 0.0, 1.0)).astype(np.uint8)
    return img.astype(np.uint8, copy=False)


def parse_obs_map(text: str) -> dict[str, str]:
    """ "server_key=jrobot_feature,..." -> {server_key: feature}; e.g.
    "observation/image=observation.images.front,observation/state=observation.state"."""
    out: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        server_key, sep, feature = item.partition("=")
        if not sep or not server_key.strip() or not feature.strip():
            raise ValueError(f"--remote.obs_map: {item!r} is not SERVER_KEY=FEATURE")
        feature = feature.strip()
        if feature != STATE_KEY and not feature.startswith(IMAGE_PREFIX):
            raise ValueError(
                f"--remote.obs_map: {feature!r} is neither {STATE_KEY!r} nor a camera ({IMAGE_PREFIX}<name>)"
            )
        out[server_key.strip()] = feature
    if not out:
        raise ValueError("--remote.obs_map is empty: map the server's keys to observation.state and cameras")
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"images/cam_high": x} -> {"images": {"cam_high": x}} (ALOHA-style clients send nested maps)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--remote.obs_map: {key!r} nests under a key that is also a value")
        node[leaf] = value
    return out


class OpenpiObservations:
    """Robot observation dicts -> one openpi request map (no history: openpi policies read one frame)."""

    def __init__(
        self,
        obs_map: Mapping[str, str],
        *,
        state_names: Sequence[str],
        image_size: tuple[int, int],
        nested: bool,
        task: str | None = None,
    ) -> None:
        self.obs_map = dict(obs_map)
        self.state_names = list(state_names)
        self.image_size = image_size
        self.nested = nested
        self.task = task

    def reset(self) -> None:
        pass

    def _state(self, source: Mapping[str, Any]) -> np.ndarray:
        if STATE_KEY in source:
            state = np.asarray(source[STATE_KEY], np.float32)
            return state[-1] if state.ndim == 2 else state  # a history: its newest frame
        missing = [n for n in self.state_names if n not in source]
        if missing:
            raise RemotePolicyError(f"the robot observation lacks {missing} for {STATE_KEY}")
        return np.asarray([source[n] for n in self.state_names], np.float32)

    def convert(self, source: Mapping[str, Any]) -> dict[str, Any]:
        """One observation (a robot's dict, or a row of jrobot features) -> the server's map."""
        flat: dict[str, Any] = {}
        for server_key, feature in self.obs_map.items():
            if feature == STATE_KEY:
                flat[server_key] = self._state(source)
                continue
            cam = feature[len(IMAGE_PREFIX) :]
            img = source.get(feature, source.get(cam))
            if img is None:
                raise RemotePolicyError(
                    f"--remote.obs_map {server_key}={feature}: the robot has no camera {cam!r}"
                )
            img = np.asarray(img)
            flat[server_key] = resize_with_pad(
                to_uint8_hwc(img[-1] if img.ndim == 4 else img), *self.image_size
            )
        if self.task is not None:
            flat["prompt"] = self.task
        return _nest(flat) if self.nested else flat

    def push(self, robot_obs: Mapping[str, Any]) -> dict[str, Any]:
        return self.convert(robot_obs)


class OpenpiPolicy(_Reconnecting):
    """Any openpi policy server (`scripts/serve_policy.py`), driving this robot's joints.

    The server's `actions` (chunk, D) are cut to the robot's `action_names` (D must be at least as
    wide); openpi servers publish no normalisation statistics, so the robot's own limits and
    `max_relative_target` are the clamps.
    """

    n_action_steps: int | None = None  # all of each chunk unless --n_action_steps says otherwise
    temporal_ensemble_coeff: float | None = None
    action_stats = None
    needs_task = False  # openpi servers decide what they need: the task is sent as `prompt` when given
    accepts_task = True

    def __init__(
        self,
        url: str,
        *,
        obs_map: Mapping[str, str],
        action_names: Sequence[str] | None,
        state_names: Sequence[str] = (),
        image_size: tuple[int, int] = (224, 224),
        nested: bool = False,
        token: str | None = None,
        timeout_s: float = 2.0,
        reconnect: bool = False,
        fps: int = 30,
    ) -> None:
        _Reconnecting.__init__(
            self, Connection(url, token=token, jrobot_client=False), reconnect=reconnect, timeout_s=timeout_s
        )
        self.url = url
        self.obs_map = dict(obs_map)
        self.action_names = list(action_names) if action_names is not None else None  # None: not cut
        self.state_names = list(state_names) or list(self.action_names or ())
        self.image_size = image_size
        self.nested = nested
        self.fps = fps
        self.latencies_s: list[float] = []
        self.metadata: dict[str, Any] = {}
        self.chunk_size: int | None = None
        self.ensure_open()

    def _metadata_checked(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata

    def observation_builder(self, task: str | None = None) -> OpenpiObservations:
        return OpenpiObservations(
            self.obs_map,
            state_names=self.state_names,
            image_size=self.image_size,
            nested=self.nested,
            task=task,
        )

    def seed(self, seed: int) -> None:
        """openpi servers take no seed; each episode starts as openpi's own clients start it."""

    def warmup(self, batch: int = 1) -> None:
        pass

    def predict_rows(self, observations: Mapping[str, np.ndarray], *, task: str | None = None) -> np.ndarray:
        """The offline mode: a batch of observations by jrobot feature name (IN.npz, optional `task` (B,)
        strings) sent one row per request, as openpi clients send; the replies stacked (B, chunk, D)."""
        tasks = observations.get(TASK_KEY)
        arrays = {k: np.asarray(v) for k, v in observations.items() if k not in (TASK_KEY, P.NOISE_KEY)}
        if not arrays:
            raise RemotePolicyError("the observations hold no arrays")
        batch = len(next(iter(arrays.values())))
        builder = self.observation_builder()
        out = []
        for b in range(batch):
            builder.task = str(tasks[b]) if tasks is not None else task
            out.append(self.predict(builder.convert({k: v[b] for k, v in arrays.items()}))[0])
        return np.stack(out)

    def predict(self, observation: Mapping[str, Any], **_: Any) -> np.ndarray:
        """One request map (from `OpenpiObservations`) -> (1, chunk, len(action_names)) actions."""
        msg = {k: v for k, v in observation.items() if k != TIMESTEP_KEY}
        t0 = time.perf_counter()
        reply = self.call(msg)
        out = _actions(reply, self.url, 1)
        self.latencies_s.append(time.perf_counter() - t0)
        self.chunk_size = out.shape[1]
        if self.action_names is None:
            return out
        width = len(self.action_names)
        if out.shape[2] < width:
            raise RemotePolicyError(
                f"{self.url}: the server's actions are {out.shape[2]} wide, the robot has {width} joints "
                f"({self.action_names})"
            )
        return out[:, :, :width]

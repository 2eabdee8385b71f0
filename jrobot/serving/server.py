"""The policy server: one bundle, many clients, openpi's frames (see `jrobot.serving`).

Per connection: the metadata map first (the bundle's description), then one reply per request, in
order. A request is an observation map keyed by the bundle's feature names, unbatched (as openpi
clients send) or with a leading batch axis; images HWC uint8 at any size or the offline layout (CHW
float in [0, 1]); the instruction as `task` or `prompt`. The bundle's own preprocessing applies
(images are resized as the runtime resizes camera frames). A reply is `{"actions", "server_timing":
{"infer_ms", "prev_total_ms", "batch_requests"}, "timestep"}` (batch_requests: how many requests the
inference call that answered this one served); a request that cannot be served gets a text frame saying
why, and the connection stays open. Messages over the size limit close that connection with code 1009
(websockets' "message too big", naming the limit); other clients are unaffected.

Inference runs on one thread (`InferenceEngine`); requests that arrive together from several clients
are run as one batch when the policy is deterministic (a stochastic policy draws each client's noise
from that connection's own seeded key, so its replies equal local inference with the same seed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import http
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from jrobot.bundle import BundleError
from jrobot.image_transforms import resize_frame
from jrobot.language import TokenizerError
from jrobot.policies.spec import FeatureType
from jrobot.runtime.policy import BundlePolicy
from jrobot.serving import protocol as P
from jrobot.serving.wire import WireError, decode_map, encode

log = logging.getLogger("jrobot.serve")


class RequestError(ValueError):
    """A request this server cannot serve; its message goes back to the client as a text frame."""


def bundle_metadata(policy: BundlePolicy) -> dict[str, Any]:
    """The metadata frame: what a client needs to drive a robot with this policy, and to check it can."""
    info, spec = policy.info, policy.spec
    return {
        "protocol": P.PROTOCOL,
        "protocol_version": P.PROTOCOL_VERSION,
        "policy_type": spec.type,
        "fps": info.fps,
        "chunk_size": spec.chunk_size,
        "n_action_steps": spec.n_action_steps,
        "n_obs_steps": spec.n_obs_steps,
        "action_names": policy.action_names,
        "features": {
            k: {"type": f.type.value, "shape": list(f.shape)} for k, f in spec.input_features.items()
        },
        "image_shapes": {k: list(v) for k, v in info.image_shapes.items()},
        "needs_task": policy.needs_task,
        "stochastic": info.stochastic,
        "policy": info.to_json(),  # the whole policy.json: a jrobot client runs its controller from it
    }


def _array(msg: Mapping[str, Any], key: str) -> np.ndarray:
    x = msg[key]
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, list):  # a client that sends plain lists (JSON-minded); numbers only
        try:
            arr = np.asarray(x)
        except ValueError as e:
            raise RequestError(f"{key}: a ragged list, not an array") from e
        if arr.dtype.kind in "biuf":
            return arr
    raise RequestError(f"{key}: expected a numpy array, got {type(x).__name__}")


def _images(x: np.ndarray, key: str, hwc: tuple[int, int, int]) -> np.ndarray:
    """(B, [T,] H, W, 3) or (B, [T,] 3, H, W) at any size -> the policy's size, as the runtime resizes."""
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise RequestError(f"{key}: images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.ndim not in (4, 5):
        raise RequestError(f"{key}: expected an image (H, W, 3), got shape {x.shape[1:]}")
    if x.shape[-1] != 3 and x.shape[-3] == 3:
        x = np.moveaxis(x, -3, -1)
    if x.shape[-1] != 3:
        raise RequestError(f"{key}: images must be (H, W, 3) or (3, H, W), got shape {x.shape[1:]}")
    h, w, _ = hwc
    if x.shape[-3:-1] == (h, w):
        return x
    if 0 in x.shape:
        raise RequestError(f"{key}: empty image of shape {x.shape[1:]}")
    frames = x.reshape(-1, *x.shape[-3:])
    if frames.dtype != np.uint8:
        frames = frames.astype(np.float32)
    out = np.stack([resize_frame(np.ascontiguousarray(f), (h, w)) for f in frames])
    return out.reshape(*x.shape[:-3], h, w, 3)


def batch_request(
    policy: BundlePolicy, msg: Mapping[str, Any], max_batch: int
) -> tuple[dict[str, Any], bool]:
    """A request map -> (observation for `BundlePolicy.prepare`, whether the request was unbatched).

    Batched-ness is read from the first feature: an array with exactly the feature's own rank (state
    (D,), image (H, W, 3)) is one unbatched observation, as openpi clients send them.
    """
    spec, info = policy.spec, policy.info
    obs: dict[str, Any] = {}
    unbatched: bool | None = None
    for key, feat in spec.input_features.items():
        if feat.type not in (FeatureType.VISUAL, FeatureType.STATE, FeatureType.ENV):
            continue
        if key not in msg:
            wanted = [k for k, f in spec.input_features.items() if f.type is not FeatureType.LANGUAGE]
            raise RequestError(f"the observation lacks {key!r}; this policy reads {wanted}")
        x = _array(msg, key)
        rank = 3 if feat.type is FeatureType.VISUAL else len(feat.shape)
        if unbatched is None:
            unbatched = x.ndim == rank
        if unbatched:
            x = x[None]
        if x.ndim < rank + 1:
            per_row = list(x.shape[1:])
            if feat.type is FeatureType.VISUAL:
                raise RequestError(f"{key}: expected an image (H, W, 3) or (3, H, W), got shape {per_row}")
            raise RequestError(f"{key}: expected shape {list(feat.shape)}, got {per_row}")
        if feat.type is FeatureType.VISUAL:
            x = _images(x, key, info.image_shapes[key])
        obs[key] = x
    for key in spec.language_keys:
        if key in msg:
            x = _array(msg, key)
            obs[key] = x[None] if unbatched and x.ndim == 1 else x
    task = next((msg[k] for k in P.TASK_KEYS if k in msg), None)
    if task is not None:
        ok = isinstance(task, str) or (isinstance(task, list) and all(isinstance(t, str) for t in task))
        if not ok:
            raise RequestError("task/prompt must be a string (or a list of strings, one per row)")
        obs["task"] = task
    elif policy.needs_task and not all(k in msg for k in spec.language_keys):
        raise RequestError("this policy follows an instruction: send it as 'prompt' (openpi) or 'task'")
    rows = next(iter(v.shape[0] for v in obs.values() if isinstance(v, np.ndarray)), 1)
    if rows > max_batch:
        raise RequestError(f"a batch of {rows} observations is over this server's limit of {max_batch}")
    return obs, bool(unbatched)


@dataclasses.dataclass
class _Work:
    obs: dict[str, np.ndarray]
    image_dtype: str
    noise: np.ndarray | None
    key: Any
    future: concurrent.futures.Future

    @property
    def rows(self) -> int:
        return next(iter(self.obs.values())).shape[0]

    def signature(self) -> tuple:
        return (self.image_dtype, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in self.obs.items())))


class InferenceEngine:
    """The one thread that runs the policy; groups concurrent deterministic requests into one batch.

    `min_latency_s` is a floor on each call's duration: the benchmark's stand-in for a slow model.
    """

    def __init__(self, policy: BundlePolicy, *, max_batch: int = 8, min_latency_s: float = 0.0):
        self.policy = policy
        self.max_batch = max(1, int(max_batch))
        self.min_latency_s = float(min_latency_s)
        self.batches: list[int] = []  # requests per policy call (for tests and the benchmark)
        self._pending: deque[_Work | None] = deque()
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="jrobot-serve-inference", daemon=True)
        self._thread.start()

    def submit(
        self,
        obs: dict[str, np.ndarray],
        image_dtype: str,
        *,
        noise: np.ndarray | None = None,
        key: Any = None,
    ) -> concurrent.futures.Future:
        """A future of ((B, chunk, A) actions, milliseconds the call took)."""
        work = _Work(obs, image_dtype, noise, key, concurrent.futures.Future())
        with self._cv:
            self._pending.append(work)
            self._cv.notify()
        return work.future

    def close(self) -> None:
        with self._cv:
            self._pending.append(None)
            self._cv.notify()
        self._thread.join(timeout=5)

    def _batchable(self, w: _Work) -> bool:
        return w.noise is None and not self.policy.info.stochastic

    def _next_group(self) -> list[_Work] | None:
        with self._cv:
            self._cv.wait_for(lambda: bool(self._pending))
            first = self._pending.popleft()
            if first is None:
                return None
            group = [first]
            if self._batchable(first):
                rows, sig = first.rows, first.signature()
                rest: deque[_Work | None] = deque()
                while self._pending:
                    w = self._pending.popleft()
                    fits = w is not None and self._batchable(w) and w.signature() == sig
                    if fits and rows + w.rows <= self.max_batch:
                        group.append(w)
                        rows += w.rows
                    else:
                        rest.append(w)
                self._pending.extendleft(reversed(rest))
            return group

    def _loop(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            t0 = time.perf_counter()
            try:
                if len(group) == 1:
                    w = group[0]
                    outs = [self.policy.run_prepared(w.obs, w.image_dtype, noise=w.noise, key=w.key)]
                else:
                    outs = self._run_batch(group)
                elapsed = time.perf_counter() - t0
                if elapsed < self.min_latency_s:
                    time.sleep(self.min_latency_s - elapsed)
                ms = (time.perf_counter() - t0) * 1000
                self.batches.append(len(group))
                for w, out in zip(group, outs, strict=True):
                    w.future.set_result((out, ms, len(group)))
            except Exception as e:  # each waiting request gets the error
                for w in group:
                    w.future.set_exception(e)

    def _run_batch(self, group: list[_Work]) -> list[np.ndarray]:
        rows = [w.rows for w in group]
        total = sum(rows)
        padded = 1 << (total - 1).bit_length()  # powers of two: few batch sizes to compile
        obs = {}
        for k in group[0].obs:
            x = np.concatenate([w.obs[k] for w in group])
            if padded > total:
                x = np.concatenate([x, np.repeat(x[-1:], padded - total, axis=0)])
            obs[k] = x
        out = self.policy.run_prepared(obs, group[0].image_dtype)
        return np.split(out[:total], np.cumsum(rows)[:-1])


@dataclasses.dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = P.DEFAULT_PORT
    token: str | None = None
    max_message_bytes: int = int(P.DEFAULT_MAX_MESSAGE_MB * 2**20)
    max_batch: int = 8
    min_latency_s: float = 0.0


class _Session:
    """One connection's state: its random key, the last timestep served, the previous round's time."""

    def __init__(self, seed: int = 0) -> None:
        self.seed(seed)
        self.prev_total_ms: float | None = None

    def seed(self, seed: int) -> None:
        import jax

        self.key = jax.random.PRNGKey(seed)
        self.last_timestep: int | None = None

    def next_key(self):
        import jax

        self.key, key = jax.random.split(self.key)
        return key


class PolicyServer:
    """Serves one loaded bundle to any number of websocket clients (`run()` until cancelled)."""

    def __init__(self, policy: BundlePolicy, options: ServerOptions | None = None):
        self.policy = policy
        self.options = options or ServerOptions()
        self.metadata = bundle_metadata(policy)
        self._metadata_frame = encode(self.metadata)
        self.engine = InferenceEngine(
            policy, max_batch=self.options.max_batch, min_latency_s=self.options.min_latency_s
        )
        self.port: int | None = None  # the bound port once started (useful with port 0)
        self.started = threading.Event()

    # -- handshake: health check, token, protocol version ---------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == P.HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        token = self.options.token
        if token is not None:
            header = request.headers.get(P.AUTH_HEADER)
            if not header:
                return connection.respond(
                    http.HTTPStatus.UNAUTHORIZED, "missing 'Authorization: Api-Key <token>' header\n"
                )
            if not P.token_matches(header, token):
                log.warning("refused %s: wrong token", connection.remote_address)
                return connection.respond(http.HTTPStatus.FORBIDDEN, "wrong token\n")
        version = request.headers.get(P.VERSION_HEADER)
        if version is not None and version.strip() != str(P.PROTOCOL_VERSION):
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST,
                f"this server speaks {P.PROTOCOL} version {P.PROTOCOL_VERSION}, the client version "
                f"{version.strip()}; use the same jrobot on both machines\n",
            )
        return None

    # -- one connection ---------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        log.info("client %s connected", peer)
        session = _Session()
        try:
            await ws.send(self._metadata_frame)
            async for frame in ws:
                t0 = time.perf_counter()
                reply = await self._answer(frame, session)
                await ws.send(reply)
                if not isinstance(reply, str):
                    session.prev_total_ms = (time.perf_counter() - t0) * 1000
        except websockets.ConnectionClosed as e:
            log.info("client %s left (%s)", peer, e)
        finally:
            log.info("client %s disconnected", peer)

    async def _answer(self, frame: bytes | str, session: _Session) -> bytes | str:
        """The reply frame: the encoded actions, an acknowledgement, or a text frame saying what was wrong."""
        if isinstance(frame, str):
            return "error: text frames are not requests; send a msgpack map in a binary frame"
        try:
            msg = decode_map(frame, "request")
            if P.CTRL_KEY in msg:
                return encode(self._control(msg, session))
            return encode(await self._infer(msg, session))
        except (RequestError, WireError, BundleError, TokenizerError) as e:
            return f"error: {e}"
        except Exception as e:  # a bug must not end the server; the client gets the gist
            log.error("request failed:\n%s", traceback.format_exc())
            return f"error: internal server error ({type(e).__name__}: {e}); see the server's log"

    def _control(self, msg: dict[str, Any], session: _Session) -> dict[str, Any]:
        ctrl = msg[P.CTRL_KEY]
        if ctrl == "episode_start":
            seed = msg.get(P.SEED_KEY, 0)
            if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
                raise RequestError(f"{P.SEED_KEY} must be an integer in [0, 2**32), got {seed!r}")
            session.seed(seed)
            return {"__ack__": "episode_start"}
        if ctrl == "episode_end":
            return {"__ack__": "episode_end"}
        return {"__ack__": "ignored"}

    async def _infer(self, msg: dict[str, Any], session: _Session) -> dict[str, Any]:
        timestep = msg.get(P.TIMESTEP_KEY)
        if timestep is not None:
            if not isinstance(timestep, int) or isinstance(timestep, bool) or timestep < 0:
                raise RequestError(f"{P.TIMESTEP_KEY} must be a non-negative integer, got {timestep!r}")
            if session.last_timestep is not None and timestep <= session.last_timestep:
                raise RequestError(
                    f"out-of-order request: timestep {timestep} after {session.last_timestep}; start a new "
                    "episode with an episode_start control message"
                )
        loop = asyncio.get_running_loop()
        policy = self.policy

        def prepare() -> tuple[dict[str, np.ndarray], str, bool, np.ndarray | None]:
            obs, unbatched = batch_request(policy, msg, self.options.max_batch)
            noise = None
            if P.NOISE_KEY in msg:
                noise = _array(msg, P.NOISE_KEY).astype(np.float32)
                noise = noise[None] if unbatched else noise
            prepared, image_dtype = policy.prepare(obs)
            return prepared, image_dtype, unbatched, noise

        prepared, image_dtype, unbatched, noise = await loop.run_in_executor(None, prepare)
        key = session.next_key() if policy.info.stochastic else None
        future = self.engine.submit(prepared, image_dtype, noise=noise, key=key)
        actions, infer_ms, batched = await asyncio.wrap_future(future)
        if timestep is not None:
            session.last_timestep = timestep
        timing = {"infer_ms": infer_ms, "batch_requests": batched}
        if session.prev_total_ms is not None:
            timing["prev_total_ms"] = session.prev_total_ms
        reply: dict[str, Any] = {
            "actions": np.ascontiguousarray(actions[0] if unbatched else actions, np.float32),
            "server_timing": timing,
        }
        if timestep is not None:
            reply["timestep"] = timestep
        return reply

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or the task is cancelled)."""
        opts = self.options
        async with serve(
            self._handler,
            opts.host,
            opts.port,
            process_request=self._process_request,
            compression=None,
            max_size=opts.max_message_bytes,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.started.set()
            if stop is None:
                await server.serve_forever()
            else:
                await stop.wait()

    def close(self) -> None:
        self.engine.close()

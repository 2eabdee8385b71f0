"""`python -m jrobot.serve`: serve a policy bundle to robots over the network (openpi's protocol).

    # on the GPU machine: loopback only (reach it through an SSH tunnel) ...
    python -m jrobot.serve --policy bundles/smolvla
    # ... or on the network, with a shared secret
    python -m jrobot.serve --policy bundles/smolvla --host 0.0.0.0 --port 8000 --token_file token.txt
    # on the laptop: the control loop, safety path and recording stay local
    python -m jrobot.run --policy ws://gpu-box:8000 --token_file token.txt --robot.type=so101_follower ...

The bundle runs on the best local device (`--device auto`: a GPU when jax sees one and the bundle was
exported for CUDA, else the CPU). Clients: `jrobot.run` / `jrobot.eval --policy ws://HOST:PORT`, or
any openpi client (`WebsocketClientPolicy(host, port, api_key=TOKEN).infer(obs)["actions"]`): frames
are openpi's (websockets, msgpack with numpy arrays, never pickle), the first frame is the policy's
metadata, `GET /healthz` answers 200. The token is checked at the handshake (401 without one, 403 for
a wrong one); without `--token_file` the server refuses to listen beyond loopback unless
`--allow_no_token=true`. A bad request gets a text frame saying what was wrong, a message over
`--max_message_mb` closes that client's connection (code 1009), and the server keeps serving everyone
else. Concurrent requests for a deterministic policy run as one batch (up to `--max_batch` rows).
`--min_latency_ms` makes every inference take at least that long (benchmarks: a stand-in for a
bigger model). Ctrl-C or SIGTERM stop the server.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jrobot.cli import Binder, CliError, run_tool
from jrobot.serving import protocol as P
from jrobot.serving.host import is_loopback, pick_device, serve_until_stopped

USAGE = __doc__ or ""


@dataclasses.dataclass
class ServeOptions:
    policy: str  # the bundle folder (python -m jrobot.export), or hf://USER/REPO[@REVISION]
    host: str = "127.0.0.1"  # 0.0.0.0: every interface (needs --token_file or --allow_no_token=true)
    port: int = P.DEFAULT_PORT  # 0: any free port (printed)
    token_file: Path | None = None
    allow_no_token: bool = False
    device: str = "auto"  # auto | cpu | gpu
    max_batch: int = 8
    max_message_mb: float = P.DEFAULT_MAX_MESSAGE_MB
    min_latency_ms: float = 0.0
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"--device must be auto, cpu or gpu, got {self.device!r}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}")
        if self.max_batch < 1:
            raise ValueError(f"--max_batch must be >= 1, got {self.max_batch}")
        if self.max_message_mb <= 0:
            raise ValueError(f"--max_message_mb must be > 0, got {self.max_message_mb}")
        if self.min_latency_ms < 0:
            raise ValueError(f"--min_latency_ms must be >= 0, got {self.min_latency_ms}")


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jax").setLevel(logging.WARNING)  # its backend probing is not the server's news
    binder = Binder.from_argv(argv)
    opts = binder.build(ServeOptions)
    binder.finish()
    try:
        token = P.read_token(opts.token_file)
    except P.ProtocolError as e:
        raise CliError(str(e)) from e
    if token is None and not is_loopback(opts.host) and not opts.allow_no_token:
        raise CliError(
            f"--host {opts.host} reaches beyond this machine: give --token_file (or --allow_no_token=true "
            "on a network you trust)"
        )
    from jrobot.hub import HubError, resolve_policy
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.serving.server import PolicyServer, ServerOptions

    try:
        folder = resolve_policy(opts.policy)
    except HubError as e:
        raise CliError(str(e)) from e
    device = pick_device(opts.device, folder)
    policy = BundlePolicy(folder, device=device)
    if opts.warmup:
        policy.warmup()
    server = PolicyServer(
        policy,
        ServerOptions(
            host=opts.host,
            port=opts.port,
            token=token,
            max_message_bytes=int(opts.max_message_mb * 2**20),
            max_batch=opts.max_batch,
            min_latency_s=opts.min_latency_ms / 1000,
        ),
    )

    def started(port: int) -> None:
        print(
            f"serving {policy.spec.type} policy {opts.policy} on ws://{opts.host}:{port} ({device.platform}; "
            f"token {'required' if token else 'off'}); Ctrl-C stops",
            flush=True,
        )

    serve_until_stopped(server, started)
    print("server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

"""Hosting a bundle on this machine: which device runs it, whether an address needs a token, and the
server's life from start to a stop signal (`jrobot.serve`). Importing this loads no jax."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jrobot.cli import CliError

if TYPE_CHECKING:  # the server imports the runtime, hence jax: only once a bundle is loaded
    from jrobot.serving.server import PolicyServer

log = logging.getLogger("jrobot.serve")


def is_loopback(host: str) -> bool:
    """Whether `host` reaches only this machine (then serving without a token is safe)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pick_device(choice: str, bundle: Path) -> Any:
    """The jax device to run on: a GPU when asked or available and the bundle has CUDA code, else CPU."""
    import jax

    from jrobot.bundle import read_info
    from jrobot.runtime.policy import read_exported

    if choice == "cpu":
        return jax.devices("cpu")[0]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    info = read_info(bundle)
    platforms = read_exported(bundle, info.variants[0]).platforms
    if gpus and "cuda" in platforms:
        return gpus[0]
    why = (
        "jax sees no GPU" if not gpus else f"the bundle was exported for {list(platforms)} only; re-export it"
    )
    if choice == "gpu":
        raise CliError(f"--device gpu: {why}")
    log.info("running on the CPU (%s)", why)
    return jax.devices("cpu")[0]


def serve_until_stopped(server: PolicyServer, on_started: Callable[[int], None]) -> None:
    """Run `server` until SIGINT or SIGTERM; `on_started(port)` once it listens. A port that cannot be
    bound is a CliError naming it; the server is closed on every way out."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(server.run(stop))
        while not server.started.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if not task.done():
            on_started(server.port)
        await task

    try:
        asyncio.run(serve())
    except OSError as e:
        o = server.options
        raise CliError(f"cannot listen on {o.host}:{o.port} ({e.strerror or e})") from e
    finally:
        server.close()

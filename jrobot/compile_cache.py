"""XLA's compiled programs kept on disk, so a command compiles a policy once per machine, not per run.

Compiling is most of a jrobot command's start-up on a CPU: an ACT bundle at 480x640 compiles for
seconds before the first action, a training step for tens of seconds before the first step, and every
`jrobot.run`, `jrobot.eval`, `jrobot.serve` or resumed `jrobot.train` of the same bundle or config
compiled the same programs again. JAX's persistent compilation cache stores each executable under a key
made of the program, the compile options, XLA flags and jaxlib's version, and loads it instead of
compiling when the key comes again; `enable_compile_cache` turns it on.

- Where: `$JROBOT_COMPILE_CACHE` if set (`0`/`off` turns the cache off), else
  `$XDG_CACHE_HOME/jrobot/xla` (`~/.cache/jrobot/xla`), in a folder per CPU type. JAX's key does not
  name the host CPU's instruction set, and XLA compiles for the CPU it runs on, so a home folder shared
  by machines with different CPUs (a cluster's NFS home) must not hand one machine's code to another.
- A cache that JAX was already given (`JAX_COMPILATION_CACHE_DIR`, `jax.config.update`) is kept as is.
- Bounded: least recently used entries go when the folder passes `MAX_BYTES`. A bound also makes JAX
  lock the folder for each read and write, so processes sharing it (data-parallel workers, a test
  run's workers) never read an entry another is still writing.
- Only programs that took at least a second to compile are stored (JAX's default); small ones compile
  faster than they load.

It is called where jax enters: `jrobot.train`'s `__init__` and, at import, `jrobot.runtime.policy` (not
`jrobot.runtime`'s `__init__`: the control loop and the remote clients stay free of jax). Every entry
point imports them before its first jax call; a process that compiled before importing them runs
without the cache (correct, only slower to start). Like any cache of machine code, the folder is
trusted: do not point it at a folder that others can write.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

ENV_DIR = "JROBOT_COMPILE_CACHE"
MAX_BYTES = 4 * 1024**3
_OFF = ("0", "false", "no", "off", "")
_enabled: Path | bool | None = False  # False: not decided yet


def host_cpu_key() -> str:
    """`<arch>-<12 hex digits>`: the machine type and a digest of the CPU's model and feature flags."""
    described = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n\n", 1)[0].splitlines()  # the first processor's block
        wanted = ("vendor_id", "model name", "cpu family", "model", "flags", "features", "cpu part")
        described = "\n".join(line for line in lines if line.split(":", 1)[0].strip().lower() in wanted)
    except OSError:
        pass  # not Linux: the processor string above stands for the CPU
    digest = hashlib.sha256(described.encode()).hexdigest()[:12]
    return f"{platform.machine() or 'unknown'}-{digest}"


def default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jrobot" / "xla"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache once per process; the folder it uses, or None."""
    global _enabled
    if _enabled is not False:
        return _enabled
    _enabled = None
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:  # the user's own choice wins
        _enabled = Path(configured)
        return _enabled
    setting = os.environ.get(ENV_DIR)
    if setting is not None and setting.strip().lower() in _OFF:
        log.debug("%s=%r: no compilation cache", ENV_DIR, setting)
        return None
    root = Path(setting).expanduser() if setting is not None else default_cache_root()
    folder = root / host_cpu_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".writable-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        log.warning(
            "compilation cache off: cannot write %s (%s); set %s to another folder", folder, e, ENV_DIR
        )
        return None
    if jax.config.jax_compilation_cache_max_size == -1:  # not bounded by the user
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    log.debug("compilation cache: %s", folder)
    _enabled = folder
    return folder
